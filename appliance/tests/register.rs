//! Registration: the nonce round trip, the keep-alive rhythm, refusals.

use flock_appliance::{Event, State};
use flock_proto::server::ServerConfig;
use flock_proto::wire::method;
use flock_proto::wire::registration::{code, Register};
use flock_testkit::sim::*;

#[test]
fn first_register_gets_a_nonce_then_succeeds() {
    let mut sim = Sim::new();
    assert_eq!(sim.app.state(), State::Starting);
    let at = sim.register();
    assert_eq!(at, T0, "registered in one round of two exchanges, no wait");

    let regs = sim.app_requests(method::REGISTER);
    assert_eq!(regs.len(), 2);
    let first = Register::parse(&regs[0].message()).unwrap();
    let second = Register::parse(&regs[1].message()).unwrap();
    assert!(first.nonce.is_none());
    assert!(second.nonce.is_some());
    assert_eq!(first.timestamp_ms, T0.0);
    assert_ne!(
        regs[0].txid(),
        regs[1].txid(),
        "new content, new transaction"
    );
    assert!(second.signature_ok());

    let errors = sim.server_sent(method::REGISTER, Class::Error);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].error_code(), Some(code::NONCE_REQUIRED));
    assert_eq!(errors[0].txid(), regs[0].txid());

    assert_eq!(
        sim.event_list(),
        vec![Event::Registered {
            mapped: sim.app_addr
        }]
    );
    assert_eq!(sim.app.state(), State::Registered);
    assert_eq!(sim.app.mapped(), Some(sim.app_addr));
    let reg = sim.server.lookup(sim.now, &sim.name()).expect("registered");
    assert_eq!(reg.addr, sim.app_addr);
    assert_eq!(reg.fingerprint_prefix, sim.app.fingerprint().prefix());
    assert_eq!(sim.app.stats().retransmitted, 0);
}

#[test]
fn keepalives_keep_it_alive_for_ten_minutes() {
    let mut sim = Sim::new();
    sim.register();
    let end = T0 + secs(600);
    sim.run_until(end);

    let kas = sim.app_requests(method::KEEPALIVE);
    assert!(
        kas.len() >= 18 && kas.len() <= 23,
        "{} keep-alives in 10 min",
        kas.len()
    );
    assert!(kas.iter().all(|k| k.delivered));
    let mut previous = T0;
    let mut gaps = vec![];
    for k in &kas {
        let gap = millis(previous, k.at);
        assert!(
            (27_000..=33_000).contains(&gap),
            "keep-alive {gap} ms after the last answer"
        );
        gaps.push(gap);
        previous = k.at;
    }
    gaps.sort();
    assert!(
        gaps[gaps.len() - 1] - gaps[0] > 1000,
        "keep-alives are jittered: {gaps:?}"
    );
    // Every keep-alive answered at once; only the first registration ever happened.
    assert_eq!(sim.app.stats().keepalives, kas.len() as u64);
    assert_eq!(sim.app.stats().retransmitted, 0);
    assert_eq!(sim.app_requests(method::REGISTER).len(), 2);
    let events = sim.event_list();
    assert_eq!(
        events[0],
        Event::Registered {
            mapped: sim.app_addr
        }
    );
    assert!(
        events[1..].iter().all(|e| *e
            == Event::KeptAlive {
                mapped: sim.app_addr
            }),
        "{events:?}"
    );
    assert_eq!(events.len(), 1 + kas.len());

    let reg = sim
        .server
        .lookup(end, &sim.name())
        .expect("still registered after 10 minutes");
    assert_eq!(reg.addr, sim.app_addr);
    assert!(u64::from(reg.expires) > end.as_secs());
    assert_eq!(sim.server.stats().keepalives, kas.len() as u64);
}

#[test]
fn server_keepalive_interval_is_used() {
    let config = ServerConfig {
        keepalive_interval: secs(10),
        entry_lifetime: secs(20),
        ..ServerConfig::default()
    };
    let mut sim = Sim::with(server_with(config, SECRET, FLOCK_SEED), |_| {});
    sim.register();
    assert_eq!(sim.app.keepalive_interval(), secs(10));
    sim.run_for(secs(120));
    let kas = sim.app_requests(method::KEEPALIVE);
    assert!(
        (11..=14).contains(&kas.len()),
        "{} keep-alives in 2 min at 10 s",
        kas.len()
    );
    assert!(sim.server.lookup(sim.now, &sim.name()).is_some());
}

#[test]
fn a_taken_name_is_refused_with_growing_pauses() {
    let mut server = server();
    let mut other = Device::new("box", 9);
    register_device(&mut server, T0, &mut other, addr("198.51.100.9:1000"));
    let mut sim = Sim::with(server, |_| {});
    let (t1, e) = sim.run_until_event(secs(1), |e| matches!(e, Event::Refused { .. }));
    assert_eq!(
        e,
        Event::Refused {
            code: code::NAME_TAKEN
        }
    );
    assert_eq!(sim.app.state(), State::Paused);
    // It tries again after a pause (5 s ± 10 %), then twice as long.
    let (t2, _) = sim.run_until_event(secs(10), |e| matches!(e, Event::Refused { .. }));
    let (t3, _) = sim.run_until_event(secs(20), |e| matches!(e, Event::Refused { .. }));
    assert!(
        (4_500..=5_500).contains(&millis(t1, t2)),
        "{}",
        millis(t1, t2)
    );
    assert!(
        (9_000..=11_000).contains(&millis(t2, t3)),
        "{}",
        millis(t2, t3)
    );
    assert!(sim.event_list().iter().all(|e| matches!(
        e,
        Event::Refused {
            code: code::NAME_TAKEN
        }
    )));
    assert_eq!(
        sim.server
            .lookup(sim.now, &sim.name())
            .unwrap()
            .fingerprint_prefix,
        other.fingerprint().prefix()
    );
}

#[test]
fn a_full_server_is_retried_until_there_is_room() {
    let config = ServerConfig {
        max_registrations: 1,
        ..ServerConfig::default()
    };
    let mut server = server_with(config, SECRET, FLOCK_SEED);
    let mut other = Device::new("other", 9);
    register_device(&mut server, T0, &mut other, addr("198.51.100.9:1000"));
    let mut sim = Sim::with(server, |_| {});
    let (_, e) = sim.run_until_event(secs(1), |e| matches!(e, Event::Refused { .. }));
    assert_eq!(
        e,
        Event::Refused {
            code: code::CAPACITY
        }
    );
    // The other registration is not kept alive: it expires after 60 s, then there is room.
    let (t, _) = sim.run_until_event(secs(200), |e| matches!(e, Event::Registered { .. }));
    assert!(
        millis(T0, t) >= 59_000,
        "registered {} ms in",
        millis(T0, t)
    );
    assert!(sim.server.lookup(sim.now, &sim.name()).is_some());
    assert!(sim.app.state().is_registered());
}

#[test]
fn the_nonce_is_kept_for_the_next_registration() {
    // Server unreachable for a while after registering: the appliance gives up on a keep-alive,
    // pauses, registers again with the nonce it already holds (no 401 round trip).
    let mut sim = Sim::with(server(), |c| c.give_up_after = secs(40));
    sim.register();
    sim.server_down(true);
    sim.run_until_event(secs(100), |e| *e == Event::GaveUp);
    assert_eq!(sim.app.state(), State::Paused);
    sim.server_down(false);
    let before = sim.app_requests(method::REGISTER).len();
    let (t, e) = sim.run_until_event(secs(10), |e| matches!(e, Event::Registered { .. }));
    assert_eq!(
        e,
        Event::Registered {
            mapped: sim.app_addr
        }
    );
    let regs = sim.app_requests(method::REGISTER);
    assert_eq!(regs.len(), before + 1, "one REGISTER, straight to success");
    assert!(Register::parse(&regs[before].message())
        .unwrap()
        .nonce
        .is_some());
    assert_eq!(regs[before].at, t);
}
