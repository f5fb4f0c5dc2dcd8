//! A flock of servers in memory: an appliance configured with any of them ends up registered at
//! the owner of its name (300 Try-Alternate), keeps using it, and follows redirects only within
//! limits. Also `only_known_peers`, the simulated restrictive NAT.

use flock_appliance::{Appliance, ApplianceConfig, Event, State, MAX_REDIRECTS};
use flock_proto::membership::{Member, Membership};
use flock_proto::server::{Keys, Server, ServerConfig};
use flock_proto::token::ProofKeys;
use flock_proto::wire::method;
use flock_proto::wire::registration::{self, code, TryAlternate};
use flock_testkit::sim::*;
use std::net::SocketAddr;
use std::sync::Arc;

const APP: &str = "203.0.113.5:40000";

/// Servers (each with its own secret, all with the flock key) and one appliance, on one wire.
struct Flock {
    now: Time,
    addrs: Vec<SocketAddr>,
    servers: Vec<Host>,
    app: Appliance,
    /// The appliance's next timer, as its last `Output::Timeout` said (`pump` leaves it fresh).
    app_timer: Option<Time>,
    events: Vec<Event>,
    /// (from, to, bytes) of everything sent.
    wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
}

fn udp(i: usize) -> SocketAddr {
    addr(&format!("192.0.2.{}:3478", i + 1))
}

/// Server `me` of a flock whose UDP addresses are `list` (in order).
fn flock_server(list: &[SocketAddr], me: usize) -> Host {
    let m = Membership {
        servers: list
            .iter()
            .map(|&u| Member {
                udp: u,
                ws: SocketAddr::new(u.ip(), 8080),
            })
            .collect(),
        me,
    };
    m.validate().unwrap();
    let keys = Keys {
        proof: ProofKeys::from_secret(&[me as u8 + 1; 32]),
        flock: Arc::new(keypair(FLOCK_SEED)),
    };
    Host::new(Server::new(
        ServerConfig {
            flock: m.flock_config([0; 32]),
            ..ServerConfig::default()
        },
        keys,
        XorShift(0x9E37_79B9_7F4A_7C15 + me as u64),
    ))
}

/// A name server `owner` of a flock of `n` owns.
fn owned_by(owner: usize, n: usize) -> String {
    (0..)
        .map(|i| format!("box-{i}"))
        .find(|s| name(s).hash().server_index(n) == owner)
        .unwrap()
}

impl Flock {
    /// `n` servers; the appliance named `name_` is configured with server `configured`.
    fn new(
        n: usize,
        name_: &str,
        configured: usize,
        tweak: impl FnOnce(&mut ApplianceConfig),
    ) -> Flock {
        let addrs: Vec<SocketAddr> = (0..n).map(udp).collect();
        let servers = (0..n).map(|i| flock_server(&addrs, i)).collect();
        let mut c = config(name_, addrs[configured]);
        tweak(&mut c);
        let app = Appliance::new(c, keypair(APP_SEED), XorShift(0x1234_5678_9ABC_DEF1));
        Flock {
            now: T0,
            addrs,
            servers,
            app,
            app_timer: None,
            events: vec![],
            wire: vec![],
        }
    }

    fn pump(&mut self) {
        let mut buf = [0u8; 1500];
        let app = addr(APP);
        for _ in 0..1000 {
            let mut moved = false;
            while let Some((dst, n)) = app_transmit(
                &mut self.app,
                self.now,
                &mut buf,
                &mut self.events,
                &mut self.app_timer,
            ) {
                moved = true;
                let req = buf[..n].to_vec();
                self.wire.push((app, dst, req.clone()));
                let Some(i) = self.addrs.iter().position(|a| *a == dst) else {
                    continue;
                };
                let mut reply = [0u8; 1500];
                if let Some(r) = self.servers[i]
                    .handle(self.now, app, &req, &mut reply)
                    .reply()
                {
                    assert!(r <= req.len());
                    self.wire.push((dst, app, reply[..r].to_vec()));
                    self.app.handle(self.now, dst, &reply[..r]);
                }
            }
            for i in 0..self.servers.len() {
                while let Some((dst, n)) = self.servers[i].next_sent(&mut buf) {
                    moved = true;
                    self.wire.push((self.addrs[i], dst, buf[..n].to_vec()));
                    if dst == app {
                        self.app.handle(self.now, self.addrs[i], &buf[..n]);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the wire never settled");
    }

    fn run_for(&mut self, d: std::time::Duration) {
        let end = self.now + d;
        self.pump();
        loop {
            let next = std::iter::once(self.app_timer)
                .chain(self.servers.iter_mut().map(|s| s.timeout()))
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.app.handle_timeout(self.now);
                    for s in &mut self.servers {
                        s.handle_timeout(self.now);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// Requests of `m` the appliance sent to server `i`.
    fn requests_to(&self, i: usize, m: Method) -> usize {
        self.wire
            .iter()
            .filter(|(f, t, b)| {
                *f == addr(APP)
                    && *t == self.addrs[i]
                    && Message::parse(b)
                        .is_ok_and(|x| x.method() == m && x.class() == Class::Request)
            })
            .count()
    }
}

#[test]
fn a_non_owner_redirects_and_the_owner_keeps_the_appliance() {
    let name_ = owned_by(2, 3);
    let mut f = Flock::new(3, &name_, 0, |_| {});
    f.run_for(secs(1));
    assert_eq!(
        f.events[0],
        Event::Redirected {
            from: udp(0),
            to: udp(2)
        }
    );
    assert!(
        matches!(f.events[1], Event::Registered { .. }),
        "{:?}",
        f.events
    );
    assert_eq!(f.app.state(), State::Registered);
    assert_eq!(f.app.server(), udp(2));
    assert_eq!(
        f.requests_to(0, method::REGISTER),
        1,
        "one REGISTER to the configured server, then the owner"
    );
    assert!(f.servers[2].lookup(f.now, &name(&name_)).is_some());
    assert!(f.servers[0].lookup(f.now, &name(&name_)).is_none());
    assert_eq!(f.servers[0].stats().redirected, 1);
    // Keep-alives for 5 minutes: all to the owner, none redirected.
    f.run_for(secs(300));
    assert!(f.requests_to(2, method::KEEPALIVE) >= 9);
    assert_eq!(
        f.requests_to(0, method::KEEPALIVE) + f.requests_to(1, method::KEEPALIVE),
        0
    );
    assert_eq!(f.servers[0].stats().redirected, 1);
    assert_eq!(f.app.stats().redirects, 1);
    assert!(f.app.state().is_registered());
}

#[test]
fn configured_with_the_owner_there_is_no_redirect() {
    let name_ = owned_by(1, 3);
    let mut f = Flock::new(3, &name_, 1, |_| {});
    f.run_for(secs(1));
    assert!(
        matches!(f.events[..], [Event::Registered { .. }]),
        "{:?}",
        f.events
    );
    assert_eq!(f.app.server(), udp(1));
    assert_eq!(
        f.servers.iter().map(|s| s.stats().redirected).sum::<u64>(),
        0
    );
}

#[test]
fn a_300_from_elsewhere_or_to_nowhere_is_not_followed() {
    let name_ = owned_by(0, 3);
    // The configured server never answers (not in the flock's wire): the REGISTER stays pending.
    let mut f = Flock::new(3, &name_, 0, |_| {});
    f.addrs[0] = addr("192.0.2.200:1");
    f.pump();
    let (_, _, req) = f
        .wire
        .iter()
        .find(|(_, t, _)| *t == udp(0))
        .unwrap()
        .clone();
    let txid = *Message::parse(&req).unwrap().transaction_id();
    let mut buf = [0u8; 128];
    let n = TryAlternate { alternate: udp(1) }
        .encode(&mut buf, method::REGISTER, &txid)
        .unwrap();
    // From another address than the one we sent to: ignored.
    f.app.handle(f.now, udp(2), &buf[..n]);
    assert_eq!(
        (f.app.stats().redirects, f.app.state(), f.app.server()),
        (0, State::Registering, udp(0))
    );
    // From the server, but to an unusable address: a refusal, no redirect.
    let n = TryAlternate {
        alternate: addr("0.0.0.0:3478"),
    }
    .encode(&mut buf, method::REGISTER, &txid)
    .unwrap();
    f.app.handle(f.now, udp(0), &buf[..n]);
    f.pump();
    assert_eq!(
        f.events,
        vec![Event::Refused {
            code: code::TRY_ALTERNATE
        }]
    );
    assert_eq!(
        (f.app.stats().redirects, f.app.state(), f.app.server()),
        (0, State::Paused, udp(0))
    );
}

#[test]
fn a_redirect_loop_ends_after_a_few_hops_and_starts_over_at_the_configured_server() {
    // Two servers with lists in opposite orders: each thinks the other owns the name.
    let name_ = owned_by(1, 2);
    let mut f = Flock::new(2, &name_, 0, |c| c.retry_pause = secs(5));
    f.servers = vec![
        flock_server(&[udp(0), udp(1)], 0),
        flock_server(&[udp(1), udp(0)], 0),
    ];
    f.run_for(secs(1));
    let redirects = f
        .events
        .iter()
        .filter(|e| matches!(e, Event::Redirected { .. }))
        .count();
    assert_eq!(redirects, MAX_REDIRECTS as usize);
    assert_eq!(
        f.events.last(),
        Some(&Event::Refused {
            code: code::TRY_ALTERNATE
        })
    );
    assert_eq!(
        (f.app.state(), f.app.server()),
        (State::Paused, udp(0)),
        "back to the configured server for the next try"
    );
    let before = f.wire.len();
    f.run_for(secs(6));
    let first = f.wire[before..]
        .iter()
        .find(|(from, _, _)| *from == addr(APP))
        .expect("registering again");
    assert_eq!(
        first.1,
        udp(0),
        "after the pause: the configured server first"
    );
}

#[test]
fn a_keepalive_redirected_after_the_list_changed_moves_to_the_new_owner() {
    // Registered with the only server; then the flock grows to 3 and the name's owner is server 2.
    let name_ = owned_by(2, 3);
    let mut f = Flock::new(1, &name_, 0, |c| c.keepalive_interval = secs(30));
    f.run_for(secs(1));
    assert_eq!(f.app.server(), udp(0));
    f.addrs = (0..3).map(udp).collect();
    f.servers = (0..3).map(|i| flock_server(&f.addrs, i)).collect();
    f.run_for(secs(40));
    assert!(
        f.events.contains(&Event::Redirected {
            from: udp(0),
            to: udp(2)
        }),
        "{:?}",
        f.events
    );
    assert_eq!(f.app.server(), udp(2));
    assert!(f.app.state().is_registered());
    assert!(f.servers[2].lookup(f.now, &name(&name_)).is_some());
    assert_eq!(f.servers[0].stats().redirected, 1, "the keep-alive");
}

#[test]
fn only_known_peers_drops_what_comes_from_addresses_never_sent_to() {
    for only_known in [false, true] {
        let name_ = owned_by(0, 1);
        let mut f = Flock::new(1, &name_, 0, |c| c.only_known_peers = only_known);
        f.run_for(secs(1));
        assert!(
            f.app.state().is_registered(),
            "the server we sent to gets through"
        );
        // A CHECK signed by the flock key, from a server the appliance never sent to.
        let mut buf = [0u8; 1500];
        let until = f.now.0 + 60_000;
        let sig = registration::sign_check(&keypair(FLOCK_SEED), &name(&name_), &[5; 16], until);
        let n =
            registration::encode_check(&mut buf, &[9; 12], &name(&name_), &[5; 16], until, &sig)
                .unwrap();
        f.app.handle(f.now, udp(7), &buf[..n]);
        f.pump();
        assert_eq!(f.app.stats().checks_answered, u64::from(!only_known));
        assert_eq!(f.app.stats().unknown_peer_dropped, u64::from(only_known));
        // The same from the server it registered with is answered either way.
        f.app.handle(f.now, udp(0), &buf[..n]);
        f.pump();
        assert_eq!(f.app.stats().checks_answered, 1 + u64::from(!only_known));
    }
}
