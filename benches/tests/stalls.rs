//! `flock-bench stalls`: runs, reports every CPU asked for, writes JSON, refuses bad input.

use flock_testkit::bench::flock_bench;
use flock_testkit::TempDir;
use std::process::Command;

#[test]
fn reports_each_cpu_and_writes_json() {
    let dir = TempDir::new("stalls");
    let json = dir.0.join("stalls.json");
    let out = Command::new(flock_bench())
        .args(["stalls", "--cpu", "0", "--duration", "0.2", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("cpu 0: pauses/s"), "{text}");
    assert!(text.contains("longest"), "{text}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cpus = doc.as_array().unwrap();
    assert_eq!(cpus.len(), 1);
    assert_eq!(cpus[0]["cpu"], 0);
    let secs = cpus[0]["seconds"].as_f64().unwrap();
    assert!((0.2..5.0).contains(&secs), "{secs}");
    assert_eq!(cpus[0]["counts"].as_array().unwrap().len(), 7);
}

#[test]
fn refuses_a_bad_duration_and_cpu_list() {
    for args in [["--duration", "0"], ["--duration", "99999"], ["--cpu", "x"]] {
        let out = Command::new(flock_bench())
            .arg("stalls")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}
