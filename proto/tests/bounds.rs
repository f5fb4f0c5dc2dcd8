//! Tables have bounds; at the bound new names are refused and known ones keep working.

use flock_proto::server::ServerConfig;
use flock_proto::wire::registration::code;
use flock_testkit::hand_driven::*;
use std::time::Duration;

#[test]
fn full_table_refuses_new_names_and_serves_known_ones() {
    let cfg = ServerConfig {
        max_registrations: 3,
        ..ServerConfig::default()
    };
    let mut s = server(cfg);
    let mut known: Vec<Device> = (0..3)
        .map(|i| Device::new(&format!("box{i}"), i + 1))
        .collect();
    for (i, d) in known.iter_mut().enumerate() {
        assert!(matches!(
            register(d, &mut s, T0, addr(&format!("192.0.2.{}:1", i + 1))),
            Answer::Registered(_)
        ));
    }
    let mut late = Device::new("late", 50);
    assert_eq!(
        register(&mut late, &mut s, T0, addr("192.0.2.50:1")).code(),
        Some(code::CAPACITY)
    );
    let now = T0 + Duration::from_secs(30);
    for (i, d) in known.iter_mut().enumerate() {
        assert!(matches!(
            keepalive(d, &mut s, now, addr(&format!("192.0.2.{}:1", i + 1))),
            Answer::KeptAlive(_)
        ));
        assert!(matches!(
            register(d, &mut s, now, addr(&format!("192.0.2.{}:1", i + 1))),
            Answer::Registered(_)
        ));
    }
    assert_eq!(s.stats().capacity_refused, 1);
    // Once one expires, there is room again.
    let later = now + Duration::from_secs(61);
    assert!(matches!(
        register(&mut late, &mut s, later, addr("192.0.2.50:1")),
        Answer::Registered(_)
    ));
}
