//! The gateway's configuration. Every field has a default, so flockd can embed it as a TOML
//! table (`[ws]`) where any key may be left out; durations are human strings ("60s", "3min").

use crate::tls::TlsConfig;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// On SIGHUP flockd hands a re-read copy to [`GatewayHandle::reconfigure`]: every key but
/// `listen` and `threads` then applies to the connections accepted from then on (the socket
/// bounds to new admissions at once; a websocket already open keeps the settings it started
/// with).
///
/// [`GatewayHandle::reconfigure`]: crate::GatewayHandle::reconfigure
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// TCP address for the page, `/healthz` and the websocket.
    pub listen: SocketAddr,
    /// Worker threads of the gateway's own tokio runtime.
    pub threads: usize,
    /// Origins a browser may connect from: empty = one whose host:port is the `Host` header;
    /// `"*"` = any; otherwise exact matches (`"https://flock.example"`). A request without
    /// `Origin` (not a browser, which could claim any origin anyway) always passes.
    pub allowed_origins: Vec<String>,
    /// Largest message (and frame) a browser may send, bytes.
    pub max_message: usize,
    /// A websocket with no frame from the browser for this long fails with `timeout`.
    #[serde(with = "human")]
    pub idle_timeout: Duration,
    /// A log-in that lasts longer than this fails with `timeout`.
    #[serde(with = "human")]
    pub session_timeout: Duration,
    /// Open TCP connections in all (page, health checks and websockets).
    pub max_sockets: usize,
    /// Open TCP connections from one IP address (IPv6: one /64).
    pub max_sockets_per_ip: usize,
    /// Read buffer per websocket, bytes (tungstenite's default of 128 KiB costs ~1.3 GB per
    /// 10 k idle sockets). Over TLS the socket is read into rustls's record buffer and the
    /// websocket takes the decrypted bytes at most 512 at a time.
    pub read_buffer: usize,
    /// From accept to an open websocket (or an answered HTTP request).
    #[serde(with = "human")]
    pub handshake_timeout: Duration,
    /// Events the core may queue for one session before it fails the session.
    pub events_queue: usize,
    /// On shutdown (SIGTERM), how long log-ins already past `login` may take to finish
    /// (close 1000) while no new websocket or log-in is taken; those left are then closed
    /// with 1001 "going away". Zero: no drain.
    #[serde(with = "human")]
    pub drain_timeout: Duration,
    /// How long `shutdown` waits, after "going away", for the open sockets to close.
    #[serde(with = "human")]
    pub shutdown_grace: Duration,
    /// Client networks that may read `/metrics`, as CIDRs (`"10.0.0.0/8"`, `"::1/128"`) or
    /// single addresses. The default is loopback only; `[]` turns `/metrics` off (404).
    /// Others get 403. IPv4-mapped IPv6 clients count as their IPv4 address. Judged on the
    /// client's address (see `trusted_proxies`).
    pub metrics_allow: Vec<String>,
    /// Serve https/wss (`[ws.tls]`); absent = plain HTTP/ws.
    pub tls: Option<TlsConfig>,
    /// Reverse proxies and load balancers (CIDRs or addresses) whose word is taken for the
    /// client's address: their PROXY header (with `proxy_protocol`), then `Forwarded` or
    /// `X-Forwarded-For`, and `X-Forwarded-Proto` for the origin check. Empty: every
    /// connection is its own client and those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Connections from `trusted_proxies` must start with a PROXY protocol header (v1 or v2);
    /// one from any other source is refused.
    pub proxy_protocol: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            threads: 2,
            allowed_origins: Vec::new(),
            max_message: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            session_timeout: Duration::from_secs(180),
            max_sockets: 100_000,
            max_sockets_per_ip: 64,
            read_buffer: 4096,
            handshake_timeout: Duration::from_secs(10),
            events_queue: 64,
            drain_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            metrics_allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            tls: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
        }
    }
}

impl GatewayConfig {
    /// Refuses settings the gateway cannot run with; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 8] = [
            (self.threads >= 1, "threads must be at least 1"),
            (
                self.max_message >= 1024,
                "max_message must be at least 1024 bytes",
            ),
            (
                self.read_buffer >= 256,
                "read_buffer must be at least 256 bytes",
            ),
            (self.max_sockets >= 1, "max_sockets must be at least 1"),
            (
                self.max_sockets_per_ip >= 1,
                "max_sockets_per_ip must be at least 1",
            ),
            (self.events_queue >= 1, "events_queue must be at least 1"),
            (
                !self.idle_timeout.is_zero(),
                "idle_timeout must not be zero",
            ),
            (
                !self.session_timeout.is_zero() && !self.handshake_timeout.is_zero(),
                "session_timeout and handshake_timeout must not be zero",
            ),
        ];
        if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("ws: {why}"));
        }
        for net in &self.metrics_allow {
            Net::parse(net).map_err(|e| format!("ws: metrics_allow: {e}"))?;
        }
        for net in &self.trusted_proxies {
            Net::parse(net).map_err(|e| format!("ws: trusted_proxies: {e}"))?;
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err(
                "ws: proxy_protocol needs trusted_proxies (who may send the header)".into(),
            );
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }

    /// The keys that only a restart applies (`listen`, `threads`) and that differ in `new`.
    pub fn restart_only_changes(&self, new: &GatewayConfig) -> Vec<&'static str> {
        let mut changed = vec![];
        if self.listen != new.listen {
            changed.push("ws.listen");
        }
        if self.threads != new.threads {
            changed.push("ws.threads");
        }
        if self.tls.is_some() != new.tls.is_some() {
            changed.push("ws.tls");
        }
        if let (Some(old), Some(new)) = (&self.tls, &new.tls) {
            if old.redirect_listen != new.redirect_listen {
                changed.push("ws.tls.redirect_listen");
            }
            if old.session_cache != new.session_cache {
                changed.push("ws.tls.session_cache");
            }
        }
        changed
    }

    /// The parsed `metrics_allow` (skipping bad entries: `validate` refuses them).
    pub(crate) fn metrics_nets(&self) -> Vec<Net> {
        nets(&self.metrics_allow)
    }

    /// The parsed `trusted_proxies`.
    pub(crate) fn trusted_nets(&self) -> Vec<Net> {
        nets(&self.trusted_proxies)
    }
}

fn nets(list: &[String]) -> Vec<Net> {
    list.iter().filter_map(|n| Net::parse(n).ok()).collect()
}

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `"a.b.c.d/n"`, `"x::y/n"` or a bare address (a host).
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, p) = s
            .trim()
            .split_once('/')
            .map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an address or a network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
        };
        Ok(Net {
            addr: addr.to_canonical(),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, keep: u8, width: u8) -> u128 {
            if keep == 0 {
                0
            } else {
                bits >> (width - keep)
            }
        }
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), self.prefix, 32)
                    == masked(u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Durations as human strings ("30s", "1h 5min", "250ms") for `#[serde(with = …)]`; flockd's
/// config uses it too.
pub mod human {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults() {
        let c: GatewayConfig = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nidle_timeout = \"5s\"\nallowed_origins = [\"*\"]",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.read_buffer, 4096);
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
        c.validate().unwrap();
        let d: GatewayConfig = toml::from_str("drain_timeout = \"30s\"\nthreads = 4").unwrap();
        assert_eq!(d.drain_timeout, Duration::from_secs(30));
        assert_eq!(
            GatewayConfig::default().restart_only_changes(&d),
            ["ws.threads"]
        );
        assert!(toml::from_str::<GatewayConfig>("listn = 1").is_err());
        let bad = GatewayConfig {
            threads: 0,
            ..GatewayConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("threads"));
        let bad = GatewayConfig {
            metrics_allow: vec!["10.0.0.0/33".into()],
            ..GatewayConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("metrics_allow"));
    }

    #[test]
    fn metrics_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let nets = GatewayConfig::default().metrics_nets();
        let allowed = |a: &str| nets.iter().any(|n| n.contains(ip(a)));
        assert!(
            allowed("127.0.0.1")
                && allowed("127.9.9.9")
                && allowed("::1")
                && allowed("::ffff:127.0.0.1")
        );
        assert!(!allowed("10.0.0.1") && !allowed("::2") && !allowed("192.168.1.1"));
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(
            n.contains(ip("10.1.200.3")) && !n.contains(ip("10.2.0.1")) && !n.contains(ip("::1"))
        );
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Net::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Net::parse("192.168.1.7")
            .unwrap()
            .contains(ip("192.168.1.7")));
        assert!(!Net::parse("192.168.1.7")
            .unwrap()
            .contains(ip("192.168.1.8")));
        assert!(Net::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        for bad in ["", "x/8", "10.0.0.0/", "::1/129", "10.0.0.0/-1"] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }
}
