//! A refused keep-alive token makes the appliance register again at once.

use flock_appliance::Event;
use flock_proto::server::ServerConfig;
use flock_proto::wire::method;
use flock_proto::wire::registration::{code, Register};
use flock_testkit::sim::*;

#[test]
fn a_server_with_another_secret_refuses_the_token_and_the_appliance_registers_again() {
    let mut sim = Sim::new();
    sim.register();
    // The server is replaced by one with a new secret: tokens and nonces it never issued.
    sim.server = server_with(ServerConfig::default(), b"another secret", FLOCK_SEED);
    let (t, _) = sim.run_until_event(secs(40), |e| matches!(e, Event::Registered { .. }));
    let addr = sim.app_addr;
    assert_eq!(
        sim.event_list(),
        vec![
            Event::Registered { mapped: addr },
            Event::TokenRefused,
            Event::Registered { mapped: addr }
        ]
    );
    let refused = sim.server_sent(method::KEEPALIVE, Class::Error);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].error_code(), Some(code::REREGISTER));
    assert_eq!(refused[0].at, t, "registered again at once");
    // The kept nonce is not the new server's: one more nonce round trip.
    let regs = sim.app_requests(method::REGISTER);
    assert_eq!(regs.len(), 4);
    assert!(Register::parse(&regs[2].message()).unwrap().nonce.is_some());
    assert_eq!(
        sim.server_sent(method::REGISTER, Class::Error)
            .last()
            .unwrap()
            .error_code(),
        Some(code::NONCE_REQUIRED)
    );
    assert_eq!(
        sim.server.lookup(sim.now, &sim.name()).unwrap().addr,
        sim.app_addr
    );
    // And it keeps it alive with the new token.
    sim.run_for(secs(120));
    assert_eq!(
        sim.server.stats().tokens_refused,
        1,
        "only the first keep-alive"
    );
    assert!(sim.server.stats().keepalives >= 3);
}

#[test]
fn a_server_restarted_with_the_same_secret_takes_the_token_back() {
    let mut sim = Sim::new();
    sim.register();
    sim.server = server();
    sim.run_for(secs(40));
    assert_eq!(
        sim.event_list(),
        vec![
            Event::Registered {
                mapped: sim.app_addr
            },
            Event::KeptAlive {
                mapped: sim.app_addr
            }
        ]
    );
    assert_eq!(
        sim.app_requests(method::REGISTER).len(),
        2,
        "no new registration"
    );
    assert_eq!(
        sim.server.lookup(sim.now, &sim.name()).unwrap().addr,
        sim.app_addr
    );
}

#[test]
fn a_keepalive_from_a_new_address_leads_to_a_registration() {
    let mut sim = Sim::new();
    sim.register();
    // The registration expires while the appliance is cut off; then its NAT mapping changes.
    sim.server_down(true);
    sim.run_for(secs(70));
    sim.server_down(false);
    sim.app_addr = addr("203.0.113.5:40999");
    let (_, e) = sim.run_until_event(secs(20), |e| matches!(e, Event::Registered { .. }));
    assert_eq!(
        e,
        Event::Registered {
            mapped: sim.app_addr
        }
    );
    let events = sim.event_list();
    assert!(events.contains(&Event::TokenRefused), "{events:?}");
    assert!(events.contains(&Event::MappedAddressChanged {
        old: addr("203.0.113.5:40000"),
        new: sim.app_addr
    }));
    assert_eq!(
        sim.server.lookup(sim.now, &sim.name()).unwrap().addr,
        sim.app_addr
    );
}
