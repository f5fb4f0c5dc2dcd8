//! The Origin check: 403 before the upgrade when refused.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;

#[tokio::test]
async fn default_allows_same_host_and_no_origin() {
    let (gw, _cores) = start(1, |_| {});
    let addr = gw.local_addr();
    assert!(
        Browser::try_connect(addr, &[]).await.is_ok(),
        "no Origin: not a browser"
    );
    assert!(
        Browser::try_connect(addr, &[("Origin", &format!("http://{addr}"))])
            .await
            .is_ok()
    );
    assert_eq!(
        Browser::try_connect(addr, &[("Origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        Browser::try_connect(addr, &[("Origin", "null")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(gw.stats().refused_origin, 2);
}

#[tokio::test]
async fn a_list_allows_exactly_its_origins() {
    let (gw, _cores) = start(1, |c| {
        c.allowed_origins = vec!["https://flock.example".into()]
    });
    let addr = gw.local_addr();
    assert!(
        Browser::try_connect(addr, &[("Origin", "https://flock.example")])
            .await
            .is_ok()
    );
    assert_eq!(
        Browser::try_connect(addr, &[("Origin", &format!("http://{addr}"))])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        Browser::try_connect(addr, &[("Origin", "https://flock.example.evil")])
            .await
            .err(),
        Some(403)
    );
}

#[tokio::test]
async fn star_allows_any() {
    let (gw, _cores) = start(1, |c| c.allowed_origins = vec!["*".into()]);
    assert!(
        Browser::try_connect(gw.local_addr(), &[("Origin", "http://anywhere.example")])
            .await
            .is_ok()
    );
}
