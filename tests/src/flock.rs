//! A flock of real flockd processes on 127.0.0.1, 127.0.0.2, … (all of 127.0.0.0/8 is loopback
//! on Linux), sharing one flock key file and one generated config; each started with
//! one unpinned core; server 0 gets `--flock-index 0`, the others find their index by the
//! address they bind.

use crate::{Flockd, TempDir};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

/// The flock's servers (index = position) and the files they share.
pub struct Flock {
    pub servers: Vec<Flockd>,
    /// The shared config (the `[flock]` list) and key file live here.
    pub dir: TempDir,
    pub config: PathBuf,
    pub key_file: PathBuf,
    /// Each server's command-line flags (to start it again).
    flags: Vec<Vec<String>>,
}

/// A free UDP port and a free TCP port on `ip` (free a moment ago).
fn free_ports(ip: &str) -> (SocketAddr, SocketAddr) {
    let udp = UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap();
    let ws = TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap();
    (udp, ws)
}

/// The `[flock]` section for these (udp, ws) addresses, key file relative to the config.
pub fn flock_toml(key_file: &str, servers: &[(SocketAddr, SocketAddr)]) -> String {
    let mut t = format!("[flock]\nkey_file = \"{key_file}\"\n");
    for (udp, ws) in servers {
        write!(t, "\n[[flock.servers]]\nudp = \"{udp}\"\nws = \"{ws}\"\n").unwrap();
    }
    t
}

/// Writes a new flock key (PKCS#8, as flockd writes it) to `path`.
pub fn write_flock_key(path: &std::path::Path) {
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    std::fs::write(path, der.as_ref()).unwrap();
}

impl Flock {
    /// Starts `n` servers (n ≤ 254) on 127.0.0.1..=127.0.0.n with `extra` flags each.
    pub fn start(n: usize, extra: &[&str]) -> Flock {
        let dir = TempDir::new("flock");
        let key_file = dir.0.join("flock.key");
        write_flock_key(&key_file);
        let addrs: Vec<(SocketAddr, SocketAddr)> = (1..=n)
            .map(|i| free_ports(&format!("127.0.0.{i}")))
            .collect();
        let config = dir.0.join("flockd.toml");
        std::fs::write(&config, flock_toml("flock.key", &addrs)).unwrap();
        let flags: Vec<Vec<String>> = addrs
            .iter()
            .enumerate()
            .map(|(i, (udp, ws))| {
                // Server 0 is told its index; the others find theirs by their bound address.
                let (index, udp, ws) = (i.to_string(), udp.to_string(), ws.to_string());
                let mut flags = vec![
                    "--config",
                    config.to_str().unwrap(),
                    "--udp",
                    &udp,
                    "--ws",
                    &ws,
                    "--cores",
                    "1",
                ];
                if i == 0 {
                    flags.extend(["--flock-index", &index]);
                }
                flags.extend_from_slice(extra);
                flags.into_iter().map(String::from).collect()
            })
            .collect();
        let servers = flags
            .iter()
            .map(|f| Flockd::start(&f.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        Flock {
            servers,
            dir,
            config,
            key_file,
            flags,
        }
    }

    /// Stops server `i` (SIGTERM, clean exit); its data directory stays for [`Flock::start_again`].
    pub fn stop(&mut self, i: usize) {
        self.servers[i].terminate();
    }

    /// Starts server `i` again on the same addresses and data directory (same secrets), with
    /// the shared config or, given `config`, another one.
    pub fn start_again(&mut self, i: usize, config: Option<&std::path::Path>) {
        self.servers[i].terminate();
        let data_dir = std::mem::replace(&mut self.servers[i].data_dir, TempDir(PathBuf::new()));
        let mut flags = self.flags[i].clone();
        if let Some(c) = config {
            let at = flags
                .iter()
                .position(|f| f == "--config")
                .expect("a --config flag")
                + 1;
            flags[at] = c.to_str().unwrap().to_string();
        }
        self.servers[i] = Flockd::start_in(
            data_dir,
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }

    /// (udp, ws) of every server, in flock order.
    pub fn addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.servers
            .iter()
            .map(|s| (s.udp, s.ws.expect("a gateway")))
            .collect()
    }

    /// A name owned by server `owner`: `{prefix}-{k}` for the first such k.
    pub fn name_owned_by(&self, owner: usize, prefix: &str) -> String {
        (0..10_000)
            .map(|k| format!("{prefix}-{k}"))
            .find(|n| self.owner(n) == owner)
            .expect("a name for every server")
    }

    /// UDP addresses in flock order.
    pub fn udp(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.udp).collect()
    }

    /// Index of the server owning `name`.
    pub fn owner(&self, name: &str) -> usize {
        name.parse::<flock_proto::Name>()
            .unwrap()
            .hash()
            .server_index(self.servers.len())
    }
}

/// `GET /metrics` from a gateway.
pub fn scrape(ws: SocketAddr) -> String {
    let mut s = TcpStream::connect(ws).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {ws}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a complete answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// Sum of a metric's samples over all label sets (all cores).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}
