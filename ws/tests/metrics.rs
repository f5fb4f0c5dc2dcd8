//! `GET /metrics`: the gateway's counters then the server's source, rendered at request time,
//! in Prometheus text format, to loopback clients only unless `metrics_allow` says otherwise.

use flock_proto::Name;
use flock_testkit::gateway::*;
use flock_ws::{
    AllowAll, CoreLink, Gateway, GatewayConfig, GatewayHandle, MetricKind, MetricsSource, ToCore,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// No cores: these tests never open a session.
struct NoCores;

impl CoreLink for NoCores {
    fn core_for(&self, _: &Name) -> usize {
        0
    }

    fn send(&self, _: usize, msg: ToCore) -> Result<(), ToCore> {
        Err(msg)
    }
}

/// Counts its renders, so a scrape shows it ran at request time.
#[derive(Default)]
struct FakeSource {
    renders: AtomicU64,
}

impl MetricsSource for FakeSource {
    fn render(&self, out: &mut String) {
        let n = self.renders.fetch_add(1, Ordering::SeqCst) + 1;
        flock_ws::write_metric(
            out,
            "fake_renders_total",
            MetricKind::Counter,
            "Renders of the fake source.",
            [(&[("core", "0")][..], n)],
        );
    }
}

fn start_with(
    source: Option<Arc<FakeSource>>,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> GatewayHandle {
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::default()
    };
    tweak(&mut config);
    let source = source.map(|s| s as Arc<dyn MetricsSource>);
    Gateway::start_full(config, Arc::new(NoCores), Arc::new(AllowAll), source)
        .expect("gateway starts")
}

async fn scrape(gw: &GatewayHandle) -> (u16, String, String) {
    let (status, head, body) =
        http(gw.local_addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    (status, head, String::from_utf8(body).expect("UTF-8"))
}

#[tokio::test]
async fn loopback_reads_the_gateway_and_the_source() {
    let source = Arc::new(FakeSource::default());
    let gw = start_with(Some(source.clone()), |_| {});
    assert_eq!(
        http(gw.local_addr(), b"GET /nope HTTP/1.1\r\n\r\n").await.0,
        404
    );

    let (status, head, body) = scrape(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    for line in [
        "# TYPE flock_ws_accepted_total counter",
        "flock_ws_accepted_total 2\n",
        "# TYPE flock_ws_open_sockets gauge",
        "flock_ws_open_sockets 1\n",
        "flock_ws_refused_total{reason=\"origin\"} 0\n",
        "flock_ws_sessions_ended_total{outcome=\"done\"} 0\n",
        "# HELP fake_renders_total Renders of the fake source.\n",
        "fake_renders_total{core=\"0\"} 1\n",
    ] {
        assert!(body.contains(line), "no {line:?} in:\n{body}");
    }
    // The gateway's families come first, the source's after them.
    assert!(body.find("flock_ws_").unwrap() < body.find("fake_renders_total").unwrap());
    // Every sample line belongs to a family announced just before.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(body.contains(&format!("# TYPE {name} ")), "{line}");
    }

    // Rendered at request time.
    let (_, _, body) = scrape(&gw).await;
    assert!(
        body.contains("fake_renders_total{core=\"0\"} 2\n"),
        "{body}"
    );
    assert!(body.contains("flock_ws_accepted_total 3\n"), "{body}");
    assert_eq!(source.renders.load(Ordering::SeqCst), 2);

    let (status, _, _) = http(
        gw.local_addr(),
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn without_a_source_the_gateway_counters_alone() {
    let (gw, _cores) = start(1, |_| {});
    let (status, _, body) = scrape(&gw).await;
    assert_eq!(status, 200);
    assert!(body.contains("flock_ws_accepted_total 1\n"), "{body}");
    assert!(!body.contains("fake_"), "{body}");
}

#[tokio::test]
async fn clients_outside_metrics_allow_are_refused() {
    let source = Arc::new(FakeSource::default());
    let gw = start_with(Some(source.clone()), |c| {
        c.metrics_allow = vec!["10.0.0.0/8".into(), "::2".into()]
    });
    let (status, _, body) = scrape(&gw).await;
    assert_eq!(
        (status, body.as_str()),
        (403, "metrics not served to this address\n")
    );
    assert_eq!(
        source.renders.load(Ordering::SeqCst),
        0,
        "nothing rendered for a refused client"
    );
    assert_eq!(gw.stats().refused_origin, 0, "not an origin refusal");
    // The rest of the port is unaffected.
    assert_eq!(
        http(gw.local_addr(), b"GET /healthz HTTP/1.1\r\n\r\n")
            .await
            .0,
        200
    );

    let gw = start_with(Some(source.clone()), |c| {
        c.metrics_allow = vec!["127.0.0.1".into()]
    });
    assert_eq!(scrape(&gw).await.0, 200);
}

#[tokio::test]
async fn an_empty_allow_list_turns_metrics_off() {
    let source = Arc::new(FakeSource::default());
    let gw = start_with(Some(source.clone()), |c| c.metrics_allow.clear());
    assert_eq!(scrape(&gw).await.0, 404);
    assert_eq!(source.renders.load(Ordering::SeqCst), 0);
}

#[test]
fn a_bad_allow_list_is_refused_at_start() {
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_allow: vec!["loopback".into()],
        ..GatewayConfig::default()
    };
    let err = Gateway::start_full(config, Arc::new(NoCores), Arc::new(AllowAll), None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("metrics_allow"), "{err}");
}
