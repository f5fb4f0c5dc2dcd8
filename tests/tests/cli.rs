//! The binaries' command lines: help, clear errors for bad input, and the simulator end to end.
use flock_tests::{workspace_bin, Flockd, TempDir};
use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(workspace_bin(bin))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn flockd_help_lists_the_options() {
    let (code, out, _) = run("flockd", &["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--udp",
        "--cpus",
        "--data-dir",
        "--entry-lifetime",
        "--check-window",
        "--flock-index",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn flockd_refuses_bad_configuration_clearly() {
    let (code, _, err) = run("flockd", &["--config", "/nonexistent/flock.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read config file /nonexistent/flock.toml"),
        "{err}"
    );

    let dir = TempDir::new("cli");
    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, "[timers]\nentry_lifetme = \"3s\"\n").unwrap();
    let (code, _, err) = run("flockd", &["--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field `entry_lifetme`"), "{err}");

    let (code, _, err) = run("flockd", &["--keepalive-interval", "90s"]);
    assert_eq!(code, 1);
    assert!(err.contains("keepalive_interval must be shorter"), "{err}");

    let (code, _, err) = run(
        "flockd",
        &[
            "--udp",
            "192.0.2.1:3478",
            "--data-dir",
            dir.0.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("192.0.2.1:3478"),
        "the error names the address: {err}"
    );
}

#[test]
fn flockd_refuses_a_bad_flock_list_clearly() {
    use flock_tests::flock::{flock_toml, write_flock_key};
    let dir = TempDir::new("cli-flock");
    write_flock_key(&dir.0.join("flock.key"));
    let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
    let three = [
        (a("127.0.0.1:3478"), a("127.0.0.1:8080")),
        (a("127.0.0.2:3478"), a("127.0.0.2:8080")),
        (a("127.0.0.3:3478"), a("127.0.0.3:8080")),
    ];
    let cfg = dir.0.join("flockd.toml");
    let data = dir.0.join("data");
    let flockd = |toml: &str, index: &str, udp: &str| {
        std::fs::write(&cfg, toml).unwrap();
        let (code, _, err) = run(
            "flockd",
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--flock-index",
                index,
                "--udp",
                udp,
                "--no-ws",
                "--data-dir",
                data.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 1, "{err}");
        err
    };
    let good = flock_toml("flock.key", &three);
    let err = flockd(&good, "3", "127.0.0.1:3478");
    assert!(
        err.contains("[flock]: this server's index 3 is not in the list of 3 servers"),
        "{err}"
    );
    let err = flockd(&good, "1", "127.0.0.9:3478");
    assert!(err.contains("udp 127.0.0.9:3478 is not this server's address in [flock]: server 1 is 127.0.0.2:3478"), "{err}");
    let dup = flock_toml(
        "flock.key",
        &[three[0], three[1], (three[0].0, a("127.0.0.3:8080"))],
    );
    let err = flockd(&dup, "0", "127.0.0.1:3478");
    assert!(
        err.contains("servers 0 and 2 have the same udp address 127.0.0.1:3478"),
        "{err}"
    );
    let err = flockd(
        &good.replace("key_file = \"flock.key\"\n", ""),
        "0",
        "127.0.0.1:3478",
    );
    assert!(
        err.contains("[flock] lists 3 servers but no flock.key_file"),
        "{err}"
    );
    let err = flockd(&flock_toml("missing.key", &three), "0", "127.0.0.1:3478");
    assert!(
        err.contains("cannot read the flock key") && err.contains("missing.key"),
        "{err}"
    );
    let err = flockd(
        &good.replace("127.0.0.2:3478", "127.0.0.2:0"),
        "0",
        "127.0.0.1:3478",
    );
    assert!(
        err.contains("server 1 has an unusable udp address 127.0.0.2:0"),
        "{err}"
    );
    assert!(
        !data.join("flock.key").exists(),
        "no key made up for a flock"
    );
}

#[test]
fn flockd_runs_on_the_cpus_it_is_given() {
    // --cpus takes a list; an unknown CPU is a clear start-up error, a known one starts.
    let (code, _, err) = run(
        "flockd",
        &[
            "--cpus",
            "999",
            "--udp",
            "127.0.0.1:0",
            "--data-dir",
            TempDir::new("cpus").0.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("999"), "the error names the CPU: {err}");
    let (code, _, err) = run("flockd", &["--cpus", "1-0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid CPU list"), "{err}");
    let mut server = Flockd::start(&["--cpus", "0"]);
    assert!(
        server.log_lines.iter().any(|l| l.contains("cores=1")),
        "{:?}",
        server.log_lines
    );
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn simulator_registers_a_fleet_and_exits() {
    let server = Flockd::start(&[]);
    let keys = TempDir::new("keys");
    let flock_pub = server.data_dir.0.join("flock.pub");
    let (code, out, err) = run(
        "flock-appliance",
        &[
            "--server",
            &server.udp.to_string(),
            "--flock-key",
            &format!("@{}", flock_pub.display()),
            "--name",
            "sim",
            "--count",
            "20",
            "--key-dir",
            keys.0.to_str().unwrap(),
            "--exit-after-register",
            "--json",
        ],
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let registered = out.lines().filter(|l| l.contains("\"registered\"")).count();
    assert_eq!(registered, 20, "{out}");
    assert_eq!(
        std::fs::read_dir(&keys.0).unwrap().count(),
        20,
        "one key file per appliance"
    );
}

#[test]
fn simulator_refuses_a_bad_flock_key() {
    let (code, _, err) = run("flock-appliance", &["--flock-key", "abc", "--name", "x"]);
    assert_ne!(code, 0);
    assert!(err.to_lowercase().contains("flock"), "{err}");
}
