//! Address families for tests that run over both IPv4 and IPv6 loopback: one test body taking
//! a [`Family`], two `#[test]` functions (`…_v4`, `…_v6`). Everything stays on 127.0.0.1 or ::1.

use crate::{Flockd, TempDir};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: SocketAddr) -> Family {
        if addr.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }

    /// 127.0.0.1 or ::1.
    pub fn loopback(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// The loopback address with `port` (0: any free port, for binding).
    pub fn addr(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.loopback(), port)
    }

    /// `127.0.0.1:0` / `[::1]:0`, as flockd's flags spell it.
    pub fn any_port(self) -> String {
        self.addr(0).to_string()
    }

    /// `extra` with `--udp` and `--ws` on this family's loopback (unless `extra` sets them).
    pub fn flags(self, extra: &[&str]) -> Vec<String> {
        let mut flags = vec![];
        if !extra.contains(&"--udp") {
            flags.extend(["--udp".to_string(), self.any_port()]);
        }
        if !extra.contains(&"--ws") && !extra.contains(&"--no-ws") {
            flags.extend(["--ws".to_string(), self.any_port()]);
        }
        flags.extend(extra.iter().map(|s| s.to_string()));
        flags
    }

    /// flockd with its UDP port and websocket gateway on this family's loopback.
    pub fn flockd(self, extra: &[&str]) -> Flockd {
        self.flockd_in(TempDir::new("flockd"), extra)
    }

    /// Same, in (or back in, for a restart) `data_dir`.
    pub fn flockd_in(self, data_dir: TempDir, extra: &[&str]) -> Flockd {
        let flags = self.flags(extra);
        let server = Flockd::start_in(
            data_dir,
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(Family::of(server.udp), self, "{}", server.udp);
        if let Some(ws) = server.ws {
            assert_eq!(Family::of(ws), self, "{ws}");
        }
        server
    }

    /// A raw UDP client on this family's loopback with a 500 ms receive timeout.
    pub fn raw_client(self) -> UdpSocket {
        let s = UdpSocket::bind(self.addr(0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    }

    /// A UDP port that was free a moment ago on this family's loopback.
    pub fn free_udp_port(self) -> u16 {
        UdpSocket::bind(self.addr(0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// An SDK appliance named `name` (key from `seed`) talking to `server`, bound on the loopback
/// of the server's family.
pub fn appliance(server: &Flockd, name: &str, seed: u8) -> flock_appliance::ApplianceHandle {
    let cfg = flock_appliance::ApplianceConfig::new(
        name.parse().unwrap(),
        server.udp,
        server.flock_public_key,
    );
    flock_appliance::spawn(
        cfg,
        flock_proto::testing::keypair(seed),
        Family::of(server.udp).addr(0),
    )
    .expect("spawn appliance")
}
