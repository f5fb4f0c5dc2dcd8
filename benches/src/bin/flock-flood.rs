//! `flock-flood`: the flood of `tests/tests/flood.rs` at full size, against a running flockd
//! (used by `benches/flood.sh`). The generator is [`flock_benches::flood`]; this prints what
//! was sent and answered.
//!
//! flock-flood --target 127.0.0.1:3478 [--junk 1000000] [--spoofed 1000000] [--badsig 20000]
//!             [--rate 400000] [--deadline 120] [--max-registrations 5000] [--real NAME,NAME]
use flock_benches::flood::{flood, now_ms, prepare, Flood, Kind, SOCKETS};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let num = |flag: &str, default: &str| -> u64 {
        arg(flag, default)
            .parse()
            .unwrap_or_else(|_| panic!("{flag}: a number"))
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        eprintln!("usage: flock-flood --target ADDR [--junk N] [--spoofed N] [--badsig N] [--rate R] [--deadline S] [--max-registrations N] [--real A,B,C]");
        return;
    }
    let target: SocketAddr = arg("--target", "127.0.0.1:3478")
        .parse()
        .expect("--target ADDR");
    assert!(target.ip().is_loopback(), "loopback targets only");
    let max_registrations = num("--max-registrations", "5000");
    let real: Vec<String> = arg("--real", "flood-real-0,flood-real-1,flood-real-2")
        .split(',')
        .map(String::from)
        .collect();
    let f = Flood {
        junk: num("--junk", "1000000"),
        spoofed: num("--spoofed", "1000000"),
        badsig: num("--badsig", "20000"),
        rate: num("--rate", "400000") as f64,
        deadline: Duration::from_secs(num("--deadline", "120")),
    };
    let socks: Vec<UdpSocket> = (0..SOCKETS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(target).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    let p = prepare(&socks, target, max_registrations, &real);
    for s in &socks {
        s.set_nonblocking(true).unwrap();
    }
    eprintln!(
        "flock-flood: prepared (signed) in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    println!("flood_start_unix_ms {}", now_ms());
    let t = flood(&socks, p, &f);
    println!("flood_end_unix_ms {}", now_ms());
    let secs = t.elapsed.as_secs_f64();
    let sent: u64 = t.sent.iter().sum();
    println!("elapsed_s {secs:.3}");
    println!("sent_total {sent} ({:.0}/s)", sent as f64 / secs);
    for (k, name) in [
        "junk",
        "spoofed",
        "bad_signature",
        "new_names",
        "address_changes",
        "thefts",
    ]
    .iter()
    .enumerate()
    {
        println!("sent_{name} {} answered {}", t.sent[k], t.answered[k]);
    }
    println!("junk_rate {:.0}/s", t.sent[0] as f64 / secs);
    println!("spoofed_rate {:.0}/s", t.sent[1] as f64 / secs);
    println!("answers_401_spoofed {}", t.code(Kind::Spoofed, 401));
    println!("answers_403_bad_signature {}", t.code(Kind::BadSig, 403));
    println!(
        "answers_registered {} answers_508 {}",
        t.registered,
        t.code(Kind::Valid, 508)
    );
    println!("answers_409_thefts {}", t.code(Kind::Taken, 409));
    println!(
        "checks_received {} unknown_answers {} would_block {}",
        t.checks, t.unknown, t.would_block
    );
}
