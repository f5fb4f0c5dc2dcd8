//! A log-in served by a server that does not own the name: LOOKUP at the owner, then the
//! exchange with the appliance directly; the cache; the owner down and back; membership
//! digests; integrity; tables drain.

use flock_proto::login::{Command, Event, Failure};
use flock_proto::server::PeerAlarm;
use flock_proto::wire::method as lm;
use flock_proto::wire::method as pm;
use flock_proto::wire::peer::{self, Sender};
use flock_proto::Time;
use flock_testkit::flock_sim::*;

fn net(only_known: bool) -> Flock {
    let mut n = Flock::new(
        Appliance::new(name_owned_by(1, "box"), only_known),
        [DIGEST; 3],
    );
    n.register(1);
    n
}

#[test]
fn non_owner_looks_up_then_talks_to_the_appliance_itself() {
    let mut n = net(false);
    n.full_login(0, 1);
    let (s0, s1, home) = (server_addr(0), server_addr(1), addr(HOME));
    assert_eq!(n.count(s0, s1, pm::LOOKUP), 1);
    assert_eq!(n.servers[1].stats().lookups_answered, 1);
    assert!(
        n.count(s0, home, lm::PERSONAS) >= 1 && n.count(s0, home, lm::CONNECT) == 1,
        "direct, signed by the flock key"
    );
    assert_eq!(n.count(s0, s1, pm::RELAY), 0);
    assert_eq!(n.servers[0].stats().relay_fallbacks, 0);
    assert!(n.appliance.heard.iter().all(|a| *a == s0));

    // The log-in took 15 s: the cache has expired, the owner is asked again; within the
    // cache's lifetime the next log-in asks nobody; after it, the owner again.
    for (id, lookups) in [(2, 2), (3, 2)] {
        n.command(
            0,
            id,
            Command::Open {
                name: n.appliance.name,
            },
        );
        n.run_for(ms(1_000));
        assert!(matches!(n.take(0, id).as_slice(), [Event::Personas(_)]));
        assert_eq!(n.count(s0, s1, pm::LOOKUP), lookups, "session {id}");
        n.command(0, id, Command::Close);
    }
    n.run_for(ms(5_000));
    n.command(
        0,
        4,
        Command::Open {
            name: n.appliance.name,
        },
    );
    n.run_for(ms(1_000));
    assert_eq!(n.count(s0, s1, pm::LOOKUP), 3);
    n.command(0, 4, Command::Close);

    // The owner serves its own names as before (no LOOKUP).
    n.full_login_again(1, 5);
    assert_eq!(n.servers[1].stats().lookups_sent, 0);
    drains(&mut n);
}

trait Again {
    fn full_login_again(&mut self, server: usize, id: u64);
}

impl Again for Flock {
    fn full_login_again(&mut self, server: usize, id: u64) {
        // The fake appliance takes one connection: start it afresh.
        let name = self.appliance.name;
        let known = std::mem::take(&mut self.appliance.known);
        self.appliance = Appliance::new(name, false);
        self.appliance.known = known;
        self.full_login(server, id);
    }
}

fn drains(n: &mut Flock) {
    n.run_for(ms(200_000));
    for s in &n.servers {
        let o = s.login_occupancy();
        assert_eq!((o.sessions, o.outstanding, o.nonces), (0, 0, 0), "{o:?}");
        assert_eq!(s.peer_occupancy(), (0, 0, 0));
    }
}

#[test]
fn owner_down_is_reported_quickly_and_service_resumes() {
    let mut n = net(false);
    n.down.insert(1);
    let t0 = n.now;
    n.command(
        0,
        1,
        Command::Open {
            name: n.appliance.name,
        },
    );
    n.run_for(ms(3_400));
    assert!(n.take(0, 1).is_empty(), "still trying");
    n.run_for(ms(200));
    assert_eq!(n.take(0, 1), vec![Event::Failed(Failure::OwnerDown)]);
    assert!(n.now.0 - t0.0 <= 3_600);
    assert_eq!(
        n.count(server_addr(0), server_addr(1), pm::LOOKUP),
        3,
        "bounded retries"
    );
    // Other names, owned by server 0 itself, are unaffected meanwhile: nothing else breaks.
    assert_eq!(n.servers[0].stats().sessions_failed, 1);

    // The owner comes back (keeping its table): the next browser gets through, no restarts.
    n.down.clear();
    n.full_login(0, 2);
    drains(&mut n);
}

#[test]
fn unknown_names_are_cached_briefly() {
    let mut n = Flock::new(
        Appliance::new(name_owned_by(1, "nobody"), false),
        [DIGEST; 3],
    );
    let name = n.appliance.name;
    let (s0, s1) = (server_addr(0), server_addr(1));
    n.command(0, 1, Command::Open { name });
    n.run_for(ms(100));
    assert_eq!(n.take(0, 1), vec![Event::Failed(Failure::UnknownAppliance)]);
    n.command(0, 2, Command::Open { name });
    assert_eq!(
        n.take(0, 2),
        vec![Event::Failed(Failure::UnknownAppliance)],
        "at once, from the cache"
    );
    assert_eq!(n.count(s0, s1, pm::LOOKUP), 1);
    n.run_for(ms(2_000));
    n.command(0, 3, Command::Open { name });
    n.run_for(ms(100));
    assert_eq!(n.take(0, 3), vec![Event::Failed(Failure::UnknownAppliance)]);
    assert_eq!(
        n.count(s0, s1, pm::LOOKUP),
        2,
        "asked again after the negative TTL"
    );
    drains(&mut n);
}

#[test]
fn a_different_membership_is_refused_loudly() {
    let mut n = Flock::new(
        Appliance::new(name_owned_by(1, "box"), false),
        [DIGEST, DIGEST, [9; 32]],
    );
    n.register(1);
    n.command(
        2,
        1,
        Command::Open {
            name: n.appliance.name,
        },
    );
    n.run_for(ms(100));
    assert_eq!(
        n.take(2, 1),
        vec![Event::Failed(Failure::OwnerDown)],
        "refused at once, not after retries"
    );
    assert_eq!(n.count(server_addr(2), server_addr(1), pm::LOOKUP), 1);
    assert_eq!(
        n.count(server_addr(1), server_addr(2), pm::LOOKUP),
        1,
        "the 470 answer"
    );
    for i in [1, 2] {
        assert!(n.servers[i].stats().peer_digest_mismatch >= 1, "server {i}");
        let alarm = n.servers[i].next_alarm();
        assert!(
            matches!(alarm, Some(PeerAlarm::MembershipDiffers { .. })),
            "server {i}: {alarm:?}"
        );
    }
    // One alarm per peer per minute, however many messages.
    n.command(
        2,
        2,
        Command::Open {
            name: n.appliance.name,
        },
    );
    n.run_for(ms(100));
    assert_eq!(n.servers[2].next_alarm(), None);
    assert_eq!(n.servers[2].stats().peer_digest_mismatch, 2);
    // Servers that agree still work together.
    n.full_login(0, 3);
}

#[test]
fn a_probe_shows_a_split_membership_without_any_log_in() {
    let mut n = Flock::new(
        Appliance::new(name_owned_by(1, "box"), false),
        [DIGEST, DIGEST, [9; 32]],
    );
    n.servers[2].probe_peers();
    n.run_for(ms(100));
    assert_eq!(n.count(server_addr(2), server_addr(0), pm::LOOKUP), 1);
    assert_eq!(n.count(server_addr(2), server_addr(1), pm::LOOKUP), 1);
    for i in 0..3 {
        let alarm = n.servers[i].next_alarm();
        assert!(
            matches!(alarm, Some(PeerAlarm::MembershipDiffers { .. })),
            "server {i}: {alarm:?}"
        );
    }
    // Servers that agree answer a probe quietly: no alarm, no session disturbed.
    let before = n.servers[1].stats().peer_digest_mismatch;
    n.servers[0].probe_peers();
    n.run_for(ms(100));
    assert_eq!(n.count(server_addr(0), server_addr(1), pm::LOOKUP), 1);
    assert_eq!(n.servers[1].next_alarm(), None);
    assert_eq!(
        n.servers[1].stats().peer_digest_mismatch,
        before,
        "server 0 agrees with server 1"
    );
    n.register(1);
    n.full_login(0, 3);
}

#[test]
fn bad_integrity_and_strangers_are_dropped_silently() {
    let mut n = net(false);
    let name = n.appliance.name;
    let mut buf = [0u8; 1500];
    let mut reply = [0u8; 1500];
    // Wrong secret.
    let wrong = Sender::new(0, DIGEST, &[3; 32]);
    let len = peer::encode_lookup(&mut buf, &[1; 12], &name, &wrong).unwrap();
    assert_eq!(
        n.servers[1]
            .handle(n.now, server_addr(0), &buf[..len], &mut reply)
            .reply(),
        None
    );
    assert_eq!(n.servers[1].stats().peer_bad_integrity, 1);
    // Right secret, replayed from an address that is not server 0's.
    let right = Sender::new(0, DIGEST, &PEER_SECRET);
    let len = peer::encode_lookup(&mut buf, &[1; 12], &name, &right).unwrap();
    assert_eq!(
        n.servers[1]
            .handle(n.now, addr("203.0.113.9:7000"), &buf[..len], &mut reply)
            .reply(),
        None
    );
    assert_eq!(n.servers[1].stats().peer_unknown_source, 1);
    // And from server 0 itself it is answered, never larger than the request.
    let got = n.servers[1]
        .handle(n.now, server_addr(0), &buf[..len], &mut reply)
        .reply()
        .unwrap();
    assert!(got <= len);
    assert_eq!(n.servers[1].stats().lookups_answered, 1);
    // A single server ignores peer messages altogether.
    let mut lone = flock_proto::server::Server::new(
        Default::default(),
        keys(),
        flock_proto::testing::XorShift(1),
    );
    assert_eq!(
        lone.handle(Time(0), server_addr(0), &buf[..len], &mut reply)
            .reply(),
        None
    );
}
