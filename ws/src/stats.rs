//! Gateway-wide counters (never per name or per user: labels would grow without bound).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the gateway's counters; `open_*` are gauges, the rest count since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// TCP connections open now (page, health checks and websockets).
    pub open_sockets: u64,
    /// Websockets open now.
    pub open_websockets: u64,
    /// TCP connections accepted.
    pub accepted: u64,
    /// Sessions that sent `open` to a core.
    pub sessions: u64,
    /// Sessions that ended with `Event::Done`.
    pub sessions_done: u64,
    /// Sessions that ended with an `error` message.
    pub session_errors: u64,
    /// Websocket upgrades refused for their `Origin` (403).
    pub refused_origin: u64,
    /// Connections refused over `max_sockets_per_ip` (429).
    pub refused_per_ip: u64,
    /// Connections refused over `max_sockets` (503).
    pub refused_full: u64,
    /// Malformed or over-long request heads (400).
    pub bad_requests: u64,
    /// Connections that did not reach an answer or a websocket within `handshake_timeout`.
    pub handshake_timeouts: u64,
    /// Connections closed for their PROXY header: missing from a trusted proxy, or sent by
    /// another source.
    pub refused_proxy: u64,
    /// TLS connections closed before any TLS work, over `tls.max_handshakes`.
    pub refused_handshakes: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (not TLS, no common parameters, a client refusing the
    /// certificate).
    pub tls_handshake_failures: u64,
    /// With TLS on: the certificate's state.
    pub tls: Option<TlsStats>,
}

/// The certificate in use and its reloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// Unix time the certificate in use expires (its notAfter).
    pub cert_not_after: u64,
    /// Certificates swapped in since start.
    pub cert_reloads: u64,
    /// Reloads that found files they could not use (the old certificate stayed).
    pub cert_reload_failures: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub open_websockets: AtomicU64,
    pub accepted: AtomicU64,
    pub sessions: AtomicU64,
    pub sessions_done: AtomicU64,
    pub session_errors: AtomicU64,
    pub refused_origin: AtomicU64,
    pub refused_per_ip: AtomicU64,
    pub refused_full: AtomicU64,
    pub bad_requests: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub refused_proxy: AtomicU64,
    pub refused_handshakes: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Counts one open websocket while alive.
pub(crate) struct WebSocketGauge<'a>(&'a Counters);

impl Counters {
    pub fn websocket_opened(&self) -> WebSocketGauge<'_> {
        bump(&self.open_websockets);
        WebSocketGauge(self)
    }

    pub fn snapshot(&self, open_sockets: usize) -> GatewayStats {
        GatewayStats {
            open_sockets: open_sockets as u64,
            open_websockets: self.open_websockets.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            sessions: self.sessions.load(Relaxed),
            sessions_done: self.sessions_done.load(Relaxed),
            session_errors: self.session_errors.load(Relaxed),
            refused_origin: self.refused_origin.load(Relaxed),
            refused_per_ip: self.refused_per_ip.load(Relaxed),
            refused_full: self.refused_full.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Relaxed),
            refused_proxy: self.refused_proxy.load(Relaxed),
            refused_handshakes: self.refused_handshakes.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            tls: None,
        }
    }
}

impl Drop for WebSocketGauge<'_> {
    fn drop(&mut self) {
        self.0.open_websockets.fetch_sub(1, Relaxed);
    }
}

/// More metrics for `GET /metrics`, rendered after the gateway's own at request time (flockd
/// adds its cores', its plugins' and its process's). Render with [`write_metric`]; never label
/// by name, user or address (labels would grow without bound and leak who uses the server).
pub trait MetricsSource: Send + Sync + 'static {
    /// Appends Prometheus text exposition (version 0.0.4) to `out`.
    fn render(&self, out: &mut String);
}

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (its name should end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Appends one metric family in Prometheus text format: `# HELP`, `# TYPE`, then one line per
/// sample. A sample's labels are `(name, value)` pairs (values are escaped); none for a family
/// of one unlabelled sample.
pub fn write_metric<'a>(
    out: &mut String,
    name: &str,
    kind: MetricKind,
    help: &str,
    samples: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], u64)>,
) {
    use std::fmt::Write;
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    };
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{k}=\"{v}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

impl GatewayStats {
    /// The gateway's counters in Prometheus text format (`flock_ws_*`).
    pub fn render(&self, out: &mut String) {
        use MetricKind::{Counter, Gauge};
        let one = |v: u64| [(&[][..], v)];
        write_metric(
            out,
            "flock_ws_open_sockets",
            Gauge,
            "TCP connections open now (page, health checks, metrics and websockets).",
            one(self.open_sockets),
        );
        write_metric(
            out,
            "flock_ws_open_websockets",
            Gauge,
            "Websockets open now.",
            one(self.open_websockets),
        );
        write_metric(
            out,
            "flock_ws_accepted_total",
            Counter,
            "TCP connections accepted.",
            one(self.accepted),
        );
        write_metric(
            out,
            "flock_ws_sessions_total",
            Counter,
            "Websocket sessions that sent open to a core.",
            one(self.sessions),
        );
        write_metric(
            out,
            "flock_ws_sessions_ended_total",
            Counter,
            "Websocket sessions ended, by outcome: done, or error (an error message was sent).",
            [
                (&[("outcome", "done")][..], self.sessions_done),
                (&[("outcome", "error")][..], self.session_errors),
            ],
        );
        write_metric(
            out,
            "flock_ws_refused_total",
            Counter,
            "HTTP requests and connections refused, by reason: origin (403), per_ip (429), full (503), bad_request (400), proxy_header (PROXY header missing from a trusted proxy or sent by another source), handshakes (over tls.max_handshakes), timeout (no answer or websocket within handshake_timeout).",
            [
                (&[("reason", "origin")][..], self.refused_origin),
                (&[("reason", "per_ip")][..], self.refused_per_ip),
                (&[("reason", "full")][..], self.refused_full),
                (&[("reason", "bad_request")][..], self.bad_requests),
                (&[("reason", "proxy_header")][..], self.refused_proxy),
                (&[("reason", "handshakes")][..], self.refused_handshakes),
                (&[("reason", "timeout")][..], self.handshake_timeouts),
            ],
        );
        let Some(tls) = self.tls else {
            return;
        };
        write_metric(
            out,
            "flock_ws_tls_handshakes_total",
            Counter,
            "TLS handshakes, by outcome: ok, or failed.",
            [
                (&[("outcome", "ok")][..], self.tls_handshakes),
                (&[("outcome", "failed")][..], self.tls_handshake_failures),
            ],
        );
        write_metric(
            out,
            "flock_ws_tls_cert_expiry_timestamp_seconds",
            Gauge,
            "Unix time the certificate in use expires (its notAfter).",
            one(tls.cert_not_after),
        );
        write_metric(
            out,
            "flock_ws_tls_cert_reloads_total",
            Counter,
            "Certificates swapped in since start (SIGHUP or the files changing).",
            one(tls.cert_reloads),
        );
        write_metric(
            out,
            "flock_ws_tls_cert_reload_failures_total",
            Counter,
            "Reloads that found certificate or key files they could not use; the running certificate stayed.",
            one(tls.cert_reload_failures),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut out = String::new();
        write_metric(
            &mut out,
            "x_total",
            MetricKind::Counter,
            "Things.\nMore",
            [(&[("core", "0"), ("reason", "a\"b")][..], 3)],
        );
        write_metric(&mut out, "y", MetricKind::Gauge, "Y.", [(&[][..], 7)]);
        assert_eq!(out, "# HELP x_total Things.\\nMore\n# TYPE x_total counter\nx_total{core=\"0\",reason=\"a\\\"b\"} 3\n# HELP y Y.\n# TYPE y gauge\ny 7\n");
        let mut out = String::new();
        GatewayStats {
            refused_full: 2,
            sessions_done: 1,
            ..GatewayStats::default()
        }
        .render(&mut out);
        assert!(
            out.contains("flock_ws_refused_total{reason=\"full\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("flock_ws_sessions_ended_total{outcome=\"done\"} 1\n"),
            "{out}"
        );
        assert!(
            !out.contains("flock_ws_tls"),
            "no TLS families without TLS: {out}"
        );
        let mut out = String::new();
        GatewayStats {
            tls: Some(TlsStats {
                cert_not_after: 1_900_000_000,
                cert_reloads: 2,
                cert_reload_failures: 1,
            }),
            ..GatewayStats::default()
        }
        .render(&mut out);
        assert!(out.contains("flock_ws_tls_cert_expiry_timestamp_seconds 1900000000\n"));
        assert!(out.contains("flock_ws_tls_cert_reload_failures_total 1\n"));
    }
}
