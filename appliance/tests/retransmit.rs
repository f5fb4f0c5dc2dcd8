//! Lost datagrams: retransmission with a doubling, capped timeout; giving up; late answers.

use flock_appliance::{Event, State};
use flock_proto::wire::method;
use flock_proto::wire::registration::Register;
use flock_testkit::sim::*;

/// Offsets (ms) of `sent` from `t0`.
fn offsets(sent: &[&Sent], t0: Time) -> Vec<u64> {
    sent.iter().map(|s| millis(t0, s.at)).collect()
}

#[test]
fn lost_requests_are_retransmitted_with_backoff() {
    let mut sim = Sim::new();
    sim.drop_rule = Box::new(|i, _, _| i < 5);
    let (at, _) = sim.run_until_event(secs(20), |e| matches!(e, Event::Registered { .. }));
    let regs = sim.app_requests(method::REGISTER);
    // Five losses: sent at 0, 0.5, 1.5, 3.5, 7.5 s; the sixth (15.5 s) gets the nonce, and the
    // signed REGISTER goes at once.
    assert_eq!(
        offsets(&regs, T0),
        vec![0, 500, 1_500, 3_500, 7_500, 15_500, 15_500]
    );
    assert!(
        regs[..6].iter().all(|r| r.txid() == regs[0].txid()),
        "a retransmission keeps its transaction id"
    );
    assert_eq!(
        regs[..6]
            .iter()
            .map(|r| r.bytes.clone())
            .collect::<std::collections::HashSet<_>>()
            .len(),
        1
    );
    assert_ne!(regs[6].txid(), regs[0].txid());
    assert_eq!(millis(T0, at), 15_500);
    assert_eq!(sim.app.stats().retransmitted, 5);
    assert_eq!(
        sim.event_list(),
        vec![Event::Registered {
            mapped: sim.app_addr
        }]
    );
}

#[test]
fn the_timeout_is_capped_and_long_waits_are_signed_again() {
    let mut sim = Sim::new();
    sim.server_down(true);
    sim.run_until(T0 + secs(120));
    let regs = sim.app_requests(method::REGISTER);
    let o = offsets(&regs, T0);
    let gaps: Vec<u64> = o.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[..6], [500, 1_000, 2_000, 4_000, 8_000, 8_000]);
    assert!(gaps.iter().all(|&g| g <= 8_000), "capped at 8 s: {gaps:?}");
    assert!(gaps[4..].iter().all(|&g| g == 8_000), "{gaps:?}");
    // After 60 s the REGISTER is signed again with a fresh timestamp, under a new transaction id.
    let first = Register::parse(&regs[0].message()).unwrap().timestamp_ms;
    let resigned = regs
        .iter()
        .position(|r| Register::parse(&r.message()).unwrap().timestamp_ms != first)
        .unwrap();
    assert!(millis(T0, regs[resigned].at) >= 60_000);
    assert_ne!(regs[resigned].txid(), regs[0].txid());
    assert_eq!(
        Register::parse(&regs[resigned].message())
            .unwrap()
            .timestamp_ms,
        regs[resigned].at.0
    );
    assert!(sim.events.is_empty());

    // The server comes back: the next retransmission gets through.
    sim.server_down(false);
    let (t, _) = sim.run_until_event(secs(10), |e| matches!(e, Event::Registered { .. }));
    assert!(millis(T0 + secs(120), t) <= 8_000);
}

#[test]
fn a_silent_server_makes_it_give_up_then_start_over() {
    let mut sim = Sim::new();
    sim.server_down(true);
    let (t, _) = sim.run_until_event(secs(700), |e| *e == Event::GaveUp);
    assert_eq!(t, T0 + secs(600), "gives up after give_up_after (10 min)");
    assert_eq!(sim.app.state(), State::Paused);
    let before = sim.app_requests(method::REGISTER).len();
    assert!(sim
        .app_requests(method::REGISTER)
        .iter()
        .all(|r| millis(T0, r.at) < 600_000));
    // After a pause (5 s ± 10 %) a new attempt begins.
    sim.run_for(secs(6));
    let regs = sim.app_requests(method::REGISTER);
    assert!(regs.len() > before);
    assert_ne!(
        regs[before].txid(),
        regs[before - 1].txid(),
        "a new attempt, a new transaction"
    );
    assert!(
        (604_500..=605_500).contains(&millis(T0, regs[before].at)),
        "{}",
        millis(T0, regs[before].at)
    );
    assert_eq!(sim.app.state(), State::Registering);
    sim.server_down(false);
    sim.run_until_event(secs(5), |e| matches!(e, Event::Registered { .. }));
}

#[test]
fn give_up_timeout_is_configurable() {
    let mut sim = Sim::with(server(), |c| c.give_up_after = secs(30));
    sim.server_down(true);
    let (t, _) = sim.run_until_event(secs(40), |e| *e == Event::GaveUp);
    assert_eq!(t, T0 + secs(30));
}

#[test]
fn lost_keepalives_are_retransmitted() {
    let mut sim = Sim::new();
    sim.register();
    // Lose the first two keep-alive transmissions (datagrams 2 and 3; 0 and 1 registered).
    sim.drop_rule = Box::new(|i, _, _| i == 2 || i == 3);
    let (t, e) = sim.run_until_event(secs(40), |e| matches!(e, Event::KeptAlive { .. }));
    assert_eq!(
        e,
        Event::KeptAlive {
            mapped: sim.app_addr
        }
    );
    let kas = sim.app_requests(method::KEEPALIVE);
    assert_eq!(kas.len(), 3);
    assert!(kas.iter().all(|k| k.txid() == kas[0].txid()));
    assert_eq!(offsets(&kas, kas[0].at), vec![0, 500, 1_500]);
    assert_eq!(t, kas[2].at);
    assert_eq!(sim.app.stats().retransmitted, 2);
}

#[test]
fn a_late_answer_to_an_earlier_transaction_of_the_attempt_counts() {
    let mut sim = Sim::new();
    // The first REGISTER gets its nonce; the signed one and everything after is lost for 70 s,
    // long enough for the appliance to sign again under a new transaction id.
    sim.drop_rule = Box::new(|i, _, _| i >= 1);
    sim.run_until(T0 + secs(70));
    let regs: Vec<Sent> = sim
        .app_requests(method::REGISTER)
        .into_iter()
        .cloned()
        .collect();
    let signed = &regs[1];
    assert!(Register::parse(&signed.message()).unwrap().nonce.is_some());
    let latest = regs.last().unwrap();
    assert_ne!(latest.txid(), signed.txid(), "signed again after 60 s");
    assert!(sim.events.is_empty());

    // The server finally sees the first signed REGISTER and answers it.
    let mut reply = [0u8; 1500];
    let n = sim
        .server
        .handle(sim.now, sim.app_addr, &signed.bytes, &mut reply)
        .reply()
        .expect("an answer");
    let answer = reply[..n].to_vec();
    let server_addr = sim.server_addr;
    sim.inject(server_addr, &answer);
    assert_eq!(
        sim.event_list(),
        vec![Event::Registered {
            mapped: sim.app_addr
        }]
    );
    assert!(sim.app.state().is_registered());
}

#[test]
fn network_change_resends_at_once() {
    let mut sim = Sim::new();
    sim.server_down(true);
    sim.run_until(T0 + secs(20)); // the timeout is 8 s by now
    let before = sim.app_requests(method::REGISTER).len();
    sim.app.network_changed(sim.now);
    sim.pump();
    let regs = sim.app_requests(method::REGISTER);
    assert_eq!(regs.len(), before + 1);
    assert_eq!(regs[before].at, sim.now);
    sim.run_for(ms(500));
    assert_eq!(
        sim.app_requests(method::REGISTER).len(),
        before + 2,
        "backoff restarted at 0.5 s"
    );
}
