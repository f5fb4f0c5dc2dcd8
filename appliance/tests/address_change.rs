//! The appliance's public address changes while it is registered: the server checks the old
//! address before moving the name.

use flock_appliance::{Appliance, Event};
use flock_proto::server::ServerConfig;
use flock_proto::wire::method;
use flock_proto::wire::registration::CheckAnswer;
use flock_testkit::sim::*;
use std::net::SocketAddr;

const OLD: &str = "203.0.113.5:40000";
const NEW: &str = "198.51.100.7:50000";

/// Registered at OLD, then (10 s later) seen at NEW. Returns the time of the change.
fn moved(sim: &mut Sim<Appliance>) -> Time {
    assert_eq!(sim.app_addr, addr(OLD));
    sim.register();
    sim.run_for(secs(10));
    sim.app_addr = addr(NEW);
    sim.now
}

fn registered_at(sim: &mut Sim<Appliance>, limit: std::time::Duration) -> Time {
    sim.run_until_event(
        limit,
        |e| matches!(e, Event::Registered { mapped } if *mapped == addr(NEW)),
    )
    .0
}

#[test]
fn check_answered_from_the_new_address_moves_the_name_at_once() {
    let mut sim = Sim::new();
    let changed = moved(&mut sim);
    sim.reachable.push(addr(OLD)); // the old NAT mapping still lets the CHECK in
    let t = registered_at(&mut sim, secs(40));

    // The next keep-alive (from NEW) is refused; REGISTER from NEW (nonce round trip) starts a
    // check; the CHECK reaches the appliance, which answers from NEW: the name moves.
    let ka = sim.app_requests(method::KEEPALIVE);
    assert_eq!(ka.last().unwrap().at, t);
    assert!(millis(changed, t) <= 33_000);
    let checks = sim.server_sent(method::CHECK, Class::Request);
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].to, addr(OLD));
    let answers = sim.app_requests(method::CHECK);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].txid(),
        checks[0].txid(),
        "the answer echoes the CHECK's transaction id"
    );
    assert_eq!(answers[0].class(), Class::Success);
    let check = flock_proto::wire::registration::Check::parse(&checks[0].message()).unwrap();
    let answer = CheckAnswer::parse(&answers[0].message()).unwrap();
    assert!(answer.proves(&sim.app.fingerprint().prefix(), &check.challenge));

    let server_addr = sim.server_addr;
    assert_eq!(
        sim.event_list()[1..],
        [
            Event::TokenRefused,
            Event::CheckAnswered { from: server_addr },
            Event::MappedAddressChanged {
                old: addr(OLD),
                new: addr(NEW)
            },
            Event::Registered { mapped: addr(NEW) },
        ]
    );
    let reg = sim.server.lookup(sim.now, &sim.name()).unwrap();
    assert_eq!(reg.addr, addr(NEW));
    assert_eq!(reg.moving_to, None);
    assert_eq!(sim.server.stats().moved, 1);
    assert_eq!(sim.app.mapped(), Some(addr(NEW)));
    // Life goes on at the new address.
    sim.run_for(secs(100));
    assert!(sim.server.stats().keepalives >= 3);
    assert_eq!(
        sim.server.lookup(sim.now, &sim.name()).unwrap().addr,
        addr(NEW)
    );
}

#[test]
fn told_of_the_change_it_acts_at_once() {
    let mut sim = Sim::new();
    let changed = moved(&mut sim);
    sim.reachable.push(addr(OLD));
    sim.app.network_changed(sim.now);
    let t = registered_at(&mut sim, secs(1));
    assert_eq!(t, changed);
}

/// A server whose registrations outlive the check window (by default the old registration,
/// last refreshed 30 s before the check starts, expires within it and ends it early).
fn long_lived(flock_seed: u8) -> Host {
    server_with(
        ServerConfig {
            entry_lifetime: secs(180),
            ..ServerConfig::default()
        },
        SECRET,
        flock_seed,
    )
}

#[test]
fn a_silent_old_address_lets_the_name_move_after_the_check_window() {
    let mut sim = Sim::with(long_lived(FLOCK_SEED), |_| {});
    moved(&mut sim);
    let t = registered_at(&mut sim, secs(120));

    let checks = sim.server_sent(method::CHECK, Class::Request);
    assert!(checks.len() >= 5, "the server retransmitted its CHECK");
    assert!(checks.iter().all(|c| c.to == addr(OLD) && !c.delivered));
    let started = checks[0].at;
    assert_eq!(t, started + secs(60), "moved when the 60 s window closed");
    // Meanwhile the appliance kept retransmitting its REGISTER, unanswered.
    let waiting: Vec<&Sent> = sim
        .app_requests(method::REGISTER)
        .into_iter()
        .filter(|r| r.at > started)
        .collect();
    assert!(waiting.len() >= 8, "{} retransmissions", waiting.len());
    assert!(sim.app_requests(method::CHECK).is_empty());

    let reg = sim.server.lookup(sim.now, &sim.name()).unwrap();
    assert_eq!(reg.addr, addr(NEW));
    assert!(sim.event_list().contains(&Event::MappedAddressChanged {
        old: addr(OLD),
        new: addr(NEW)
    }));
    assert!(sim.app.state().is_registered());
}

#[test]
fn a_check_not_signed_by_the_pinned_flock_key_is_not_answered() {
    // The server signs CHECKs with a flock key the appliance did not pin.
    let mut sim = Sim::with(long_lived(77), |_| {});
    moved(&mut sim);
    sim.reachable.push(addr(OLD));
    let t = registered_at(&mut sim, secs(120));

    let checks = sim.server_sent(method::CHECK, Class::Request);
    assert!(checks.len() >= 5 && checks.iter().all(|c| c.delivered));
    assert!(sim.app_requests(method::CHECK).is_empty(), "never answered");
    assert!(sim.app_elsewhere().is_empty());
    assert_eq!(sim.app.stats().checks_answered, 0);
    assert_eq!(sim.app.stats().checks_ignored, checks.len() as u64);
    assert!(!sim
        .event_list()
        .iter()
        .any(|e| matches!(e, Event::CheckAnswered { .. })));
    // The name still moves, once the window closes.
    assert_eq!(t, checks[0].at + secs(60));
    assert_eq!(
        sim.server.lookup(sim.now, &sim.name()).unwrap().addr,
        addr(NEW)
    );
}

#[test]
fn moving_again_while_checking_retargets() {
    // NEW is replaced by a third address before the check ends: the server answers there.
    let mut sim = Sim::new();
    moved(&mut sim);
    sim.run_until_event(secs(40), |e| *e == Event::TokenRefused);
    sim.run_for(secs(5));
    let third: SocketAddr = addr("198.51.100.7:50001");
    sim.app_addr = third;
    sim.app.network_changed(sim.now);
    let (_, e) = sim.run_until_event(secs(120), |e| matches!(e, Event::Registered { .. }));
    assert_eq!(e, Event::Registered { mapped: third });
    assert_eq!(sim.server.lookup(sim.now, &sim.name()).unwrap().addr, third);
}

#[test]
fn a_silent_old_address_whose_registration_expires_moves_sooner() {
    let mut sim = Sim::new();
    moved(&mut sim);
    let t = registered_at(&mut sim, secs(120));
    let started = sim.server_sent(method::CHECK, Class::Request)[0].at;
    // Last refreshed at T0 (registration), the old entry dies at T0 + 60 s: the server's next
    // CHECK retransmission after that moves the name, before the window closes.
    assert!(
        t >= T0 + secs(60) && t < started + secs(60),
        "moved {} ms after the check started",
        millis(started, t)
    );
    assert_eq!(
        sim.server.lookup(sim.now, &sim.name()).unwrap().addr,
        addr(NEW)
    );
}
