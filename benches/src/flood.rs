//! The flood generator shared by `flock-flood` (benches/flood.sh, the 1 M + 1 M run of record)
//! and `tests/tests/flood.rs` (the bounded CI run): junk datagrams, spoofed-name REGISTERs
//! without a nonce (401), with a valid nonce and a broken signature (403), 1.5 × the table bound
//! of new names (then 508), thefts of the real appliances' names (409) and address changes from
//! one IP (rate-limited checks), from `SOCKETS` source ports, paced, every answer read and
//! tallied by kind (the kind rides in the transaction id).
use flock_proto::testing::{Answer, Device};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub const SOCKETS: usize = 64;
const BURST: usize = 8;
/// Answerable requests in flight at most (about 1 in 3 datagrams is answerable).
const WINDOW: u64 = 1024;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn request(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| buf[..n].to_vec())
}

// ---- wire helpers -------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *e = c;
    }
    t
}

/// Recomputes the FINGERPRINT (the last 8 bytes) of a STUN message after it was patched.
fn refinger(t: &[u32; 256], m: &mut [u8]) {
    let n = m.len();
    let mut c = !0u32;
    for &b in &m[..n - 8] {
        c = t[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    m[n - 4..].copy_from_slice(&((!c) ^ 0x5354_554E).to_be_bytes());
}

/// Kinds of datagrams; the kind is byte 8 of the transaction id, so answers can be told apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    Junk = 0,
    Spoofed = 1,
    BadSig = 2,
    Valid = 3,
    Move = 4,
    Taken = 5,
}
pub const KINDS: usize = 6;

fn txid(kind: Kind, n: u64) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[0] = kind as u8;
    t[1] = 0xF1;
    t[4..].copy_from_slice(&n.to_be_bytes());
    t
}

/// Writes `n` as 10 decimal digits over the last 10 bytes of the NAME value (16-byte names).
fn patch_name(m: &mut [u8], n: u64) {
    assert_eq!(&m[20..24], &[0x7F, 0x01, 0, 16], "NAME first, 16 bytes");
    let mut v = n;
    for i in (0..10).rev() {
        m[30 + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

// ---- the flood ----------------------------------------------------------------------------

#[derive(Default, Debug)]
pub struct Tally {
    pub sent: [u64; KINDS],
    /// Answers per kind: any, and by outcome.
    pub answered: [u64; KINDS],
    pub registered: u64,
    pub codes: std::collections::BTreeMap<(u8, u16), u64>,
    pub checks: u64,
    pub unknown: u64,
    pub would_block: u64,
    pub elapsed: Duration,
}

impl Tally {
    /// Datagrams sent that the server answers (all but junk and address changes).
    pub fn answerable(&self) -> u64 {
        self.sent[Kind::Spoofed as usize]
            + self.sent[Kind::BadSig as usize]
            + self.sent[Kind::Valid as usize]
            + self.sent[Kind::Taken as usize]
    }

    pub fn code(&self, kind: Kind, code: u16) -> u64 {
        self.codes.get(&(kind as u8, code)).copied().unwrap_or(0)
    }

    pub fn read(&mut self, d: &[u8]) {
        if d.len() < 20 {
            self.unknown += 1;
            return;
        }
        let ty = u16::from_be_bytes([d[0], d[1]]);
        if ty == 0x3C03 {
            self.checks += 1; // a CHECK to an "old address" of ours: never answered
            return;
        }
        let kind = d[8] as usize;
        if d[9] != 0xF1 || kind >= KINDS {
            self.unknown += 1;
            return;
        }
        self.answered[kind] += 1;
        match ty {
            0x3D01 => self.registered += 1,
            0x3D11 if d.len() >= 28 && d[20..22] == [0, 9] => {
                *self
                    .codes
                    .entry((kind as u8, d[26] as u16 * 100 + d[27] as u16))
                    .or_default() += 1
            }
            _ => self.unknown += 1,
        }
    }
}

/// The signed material, prepared before the flood (signing is the slow part).
pub struct Prepared {
    /// No-nonce REGISTER templates (names varied → 401).
    pub spoofed: Vec<Vec<u8>>,
    /// Per socket: a REGISTER signed with that socket's nonce (names varied → 403).
    pub badsig: Vec<Vec<u8>>,
    /// (socket, datagram) to send in the first half / the second half.
    pub first: Vec<(usize, Vec<u8>)>,
    pub second: Vec<(usize, Vec<u8>)>,
}

pub fn prepare(
    socks: &[UdpSocket],
    server: SocketAddr,
    max_registrations: u64,
    real: &[String],
) -> Prepared {
    // One nonce per source socket (a nonce is bound to the source address and port).
    let nonces: Vec<_> = socks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut d = Device::new(&format!("flood-nonce-{i}"), 90);
            let t = d.txid();
            let a =
                Answer::read(&request(s, server, &d.register_bytes(now_ms(), &t)).expect("a 401"));
            assert_eq!(a.code(), Some(401), "{a:?}");
            d.absorb(&a);
            d.nonce.expect("a nonce")
        })
        .collect();
    let now = now_ms();
    let mut n = 0u64;
    let mut signed = |d: &mut Device, name: &str, kind: Kind, sock: usize| {
        d.name = name.parse().unwrap();
        d.nonce = Some(nonces[sock]);
        n += 1;
        // A move is signed after the registration it moves (the server takes a name's
        // REGISTERs in timestamp order).
        let ts = if matches!(kind, Kind::Move) {
            now + 1
        } else {
            now
        };
        d.register_bytes(ts, &txid(kind, n))
    };
    let mut keys: Vec<Device> = (0..8).map(|k| Device::new("flood-key", 100 + k)).collect();
    let spoofed = (0..4u8)
        .map(|k| {
            let d = Device::new("spoof-0000000000", 110 + k);
            d.register_bytes(now, &txid(Kind::Spoofed, 0))
        })
        .collect();
    let badsig = (0..SOCKETS)
        .map(|s| signed(&mut keys[s % 8], "badsg-0000000000", Kind::BadSig, s))
        .collect();
    // New names, 1.5 × the bound: the table must fill and refuse the rest with 508.
    let valid = max_registrations * 3 / 2;
    let mut first = vec![];
    for i in 0..valid as usize {
        let s = i % SOCKETS;
        first.push((
            s,
            signed(
                &mut keys[i % 8],
                &format!("flood-valid-{i}"),
                Kind::Valid,
                s,
            ),
        ));
    }
    // Someone else's key on the real appliances' names, with valid nonces: 409.
    let mut thief = Device::new("flood-key", 120);
    for i in 0..30 {
        let s = (i * 7) % SOCKETS;
        first.push((s, signed(&mut thief, &real[i % real.len()], Kind::Taken, s)));
    }
    // The same identity from another port of 127.0.0.1: an address change each, all from one IP.
    let mut second = vec![];
    for i in 0..64usize {
        let s = (i + 1) % SOCKETS;
        second.push((
            s,
            signed(&mut keys[i % 8], &format!("flood-valid-{i}"), Kind::Move, s),
        ));
    }
    Prepared {
        spoofed,
        badsig,
        first,
        second,
    }
}

#[derive(Clone, Copy)]
pub struct Flood {
    pub junk: u64,
    pub spoofed: u64,
    pub badsig: u64,
    pub rate: f64,
    pub deadline: Duration,
}

fn drain(socks: &[UdpSocket], tally: &mut Tally, buf: &mut [u8]) {
    for s in socks {
        for _ in 0..4096 {
            match s.recv(buf) {
                Ok(n) => tally.read(&buf[..n]),
                Err(_) => break,
            }
        }
    }
}

/// Sends the flood, paced at `f.rate`, and reads every answer. Bounded by `f.deadline`.
pub fn flood(socks: &[UdpSocket], p: Prepared, f: &Flood) -> Tally {
    let crc = crc_table();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // The plan: kinds shuffled; the first half carries the new names and the thefts, the second
    // half the address changes (after the names they move were registered).
    let (junk, spoofed, badsig) = (f.junk, f.spoofed, f.badsig);
    let mut halves = [p.first, p.second];
    let mut plan: Vec<Vec<Kind>> = (0..2)
        .map(|h| {
            let mut v: Vec<Kind> = Vec::new();
            let split = |x: u64| if h == 0 { x / 2 } else { x - x / 2 };
            v.extend(std::iter::repeat_n(Kind::Junk, split(junk) as usize));
            v.extend(std::iter::repeat_n(Kind::Spoofed, split(spoofed) as usize));
            v.extend(std::iter::repeat_n(Kind::BadSig, split(badsig) as usize));
            v.extend(std::iter::repeat_n(Kind::Valid, halves[h].len()));
            for i in (1..v.len()).rev() {
                v.swap(i, rng.below(i + 1));
            }
            v
        })
        .collect();
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 2048];
    let mut dgram = vec![0u8; 2048];
    let start = Instant::now();
    let (mut counter, mut next_sock) = (0u64, 0usize);
    let (mut last_answered, mut last_progress, mut forgiven) = (0u64, Instant::now(), 0u64);
    for h in 0..2 {
        let mut precious = std::mem::take(&mut halves[h]).into_iter();
        let mut kinds = std::mem::take(&mut plan[h]).into_iter().peekable();
        while kinds.peek().is_some() {
            if start.elapsed() > f.deadline {
                eprintln!("flood: deadline {:?} reached, stopping early", f.deadline);
                tally.elapsed = start.elapsed();
                return tally;
            }
            // Pacing: no more than `rate` × elapsed sent so far, and no more than `WINDOW`
            // answerable requests unanswered (the server's pace, not the kernel buffer's; after
            // 100 ms without an answer the missing ones count as lost).
            let allowed =
                (f.rate * start.elapsed().as_secs_f64()) as u64 + (SOCKETS * BURST) as u64;
            let answered = tally.answered.iter().sum::<u64>();
            if answered != last_answered {
                (last_answered, last_progress) = (answered, Instant::now());
            }
            let outstanding = tally.answerable().saturating_sub(answered + forgiven);
            let stalled = last_progress.elapsed() > Duration::from_millis(100);
            if outstanding > WINDOW && stalled {
                forgiven += outstanding;
                last_progress = Instant::now();
            }
            if tally.sent.iter().sum::<u64>() >= allowed || (outstanding > WINDOW && !stalled) {
                std::thread::sleep(Duration::from_millis(1));
                drain(socks, &mut tally, &mut buf);
                continue;
            }
            for _ in 0..SOCKETS * BURST {
                let Some(kind) = kinds.next() else { break };
                counter += 1;
                let (sock, len, kind) = match kind {
                    Kind::Junk => {
                        let len = 4 + rng.below(540);
                        for c in dgram[..len].chunks_mut(8) {
                            let r = rng.next().to_le_bytes();
                            c.copy_from_slice(&r[..c.len()]);
                        }
                        if len >= 28 && counter % 4 == 0 {
                            // STUN-shaped: a flock request header, random attributes, no valid FINGERPRINT.
                            let body = (len - 20) & !3;
                            let ty: u16 = if counter % 8 == 0 { 0x3C01 } else { 0x3C02 };
                            dgram[..2].copy_from_slice(&ty.to_be_bytes());
                            dgram[2..4].copy_from_slice(&(body as u16).to_be_bytes());
                            dgram[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                            dgram[8] = Kind::Junk as u8;
                            dgram[9] = 0xF1;
                            (next_sock, 20 + body, Kind::Junk)
                        } else {
                            (next_sock, len, Kind::Junk)
                        }
                    }
                    Kind::Spoofed => {
                        let t = &p.spoofed[counter as usize % p.spoofed.len()];
                        dgram[..t.len()].copy_from_slice(t);
                        dgram[8..20].copy_from_slice(&txid(Kind::Spoofed, counter));
                        patch_name(&mut dgram[..t.len()], counter);
                        refinger(&crc, &mut dgram[..t.len()]);
                        (next_sock, t.len(), Kind::Spoofed)
                    }
                    Kind::BadSig => {
                        // Must leave from the socket its nonce is bound to.
                        let s = next_sock;
                        let t = &p.badsig[s];
                        dgram[..t.len()].copy_from_slice(t);
                        dgram[8..20].copy_from_slice(&txid(Kind::BadSig, counter));
                        patch_name(&mut dgram[..t.len()], counter);
                        refinger(&crc, &mut dgram[..t.len()]);
                        (s, t.len(), Kind::BadSig)
                    }
                    _ => {
                        let (s, d) = precious.next().expect("planned");
                        dgram[..d.len()].copy_from_slice(&d);
                        let k = if d[8] == Kind::Valid as u8 {
                            Kind::Valid
                        } else if d[8] == Kind::Move as u8 {
                            Kind::Move
                        } else {
                            Kind::Taken
                        };
                        (s, d.len(), k)
                    }
                };
                next_sock = (next_sock + 1) % SOCKETS;
                match socks[sock].send(&dgram[..len]) {
                    Ok(_) => tally.sent[kind as usize] += 1,
                    Err(_) => tally.would_block += 1,
                }
            }
            drain(socks, &mut tally, &mut buf);
        }
    }
    // Late answers.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(500) {
        drain(socks, &mut tally, &mut buf);
        std::thread::sleep(Duration::from_millis(10));
    }
    tally.elapsed = start.elapsed();
    tally
}
