//! Log-ins faster than an appliance answers (a burst of 8 answers, then one per second) fail at
//! once with the typed error `appliance-busy` (close 1013), against a real flockd and an SDK
//! appliance: not after a retransmission, and not as the server's own `busy`.

use flock_appliance::Event;
use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{appliance, wait_event, Flockd};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_ins_past_the_answer_rate_fail_fast_with_appliance_busy() {
    let server = Flockd::start(&[]);
    let ws = server.ws.unwrap();
    let mut h = appliance(&server, "busy-box", 1);
    wait_event(&mut h, WAIT, "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    let _app = run_appliance(h, LIST, Behaviour::Mute);
    // Sixteen browsers at once: the appliance answers eight (its burst) and about one more per
    // second; every other one is told at once that the appliance is busy.
    let began = Instant::now();
    let tries: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut b = Browser::connect(ws).await;
                let opened = Instant::now();
                b.open("busy-box").await;
                let v = b.recv().await;
                let took = opened.elapsed();
                let code = if v["type"] == "error" {
                    Some(b.closed().await.code)
                } else {
                    None
                };
                (v, took, code, b)
            })
        })
        .collect();
    let mut listed = 0;
    let mut busy = 0;
    let mut held = vec![];
    for t in tries {
        let (v, took, code, b) = t.await.unwrap();
        match v["type"].as_str() {
            Some("personas") => listed += 1,
            Some("error") => {
                assert_eq!(v["code"], "appliance-busy", "{v}");
                assert_eq!(code, Some(1013), "try again later");
                assert!(
                    took < Duration::from_millis(450),
                    "failed fast, before the 500 ms retransmission: {took:?}"
                );
                busy += 1;
            }
            _ => panic!("unexpected {v}"),
        }
        held.push(b);
    }
    let allowed = 8 + began.elapsed().as_secs() as usize + 1;
    assert!(
        listed >= 8 && listed <= allowed,
        "{listed} answered, at most {allowed}"
    );
    assert_eq!(listed + busy, 16);
    assert!(busy > 0, "some log-ins past the rate");
    // A second later the appliance answers again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut b = Browser::connect(ws).await;
    b.open("busy-box").await;
    b.expect("personas").await;
}
