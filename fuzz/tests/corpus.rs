//! Replays every seed (and any saved crash input under `artifacts/`) through the target bodies
//! on the stable toolchain, without libFuzzer: `cd fuzz && cargo test`.

use std::fs;
use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("stun_parse", flock_fuzz::stun_parse),
    ("flock_messages", flock_fuzz::flock_messages),
    ("server_handle", flock_fuzz::server_handle),
    ("ws_json", flock_fuzz::ws_json),
    ("ws_preface", flock_fuzz::ws_preface),
    ("config_toml", flock_fuzz::config_toml),
];

#[test]
fn seeds_and_artifacts_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, run) in TARGETS {
        let mut seen = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = fs::read_dir(root.join(dir).join(name)) else { continue };
            for e in entries {
                let path = e.unwrap().path();
                run(&fs::read(&path).unwrap());
                seen += 1;
            }
        }
        assert!(seen > 0, "no seeds for {name}");
    }
}

#[test]
fn seeds_are_real_messages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in fs::read_dir(root.join("corpus/stun_parse")).unwrap() {
        let path = e.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        assert!(flock_proto::stun::Message::parse(&bytes).is_ok(), "{} does not parse", path.display());
    }
    for e in fs::read_dir(root.join("corpus/ws_json")).unwrap() {
        let path = e.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let ok = if text.starts_with('[') {
            flock_ws::fuzzing::decode_personas(text.as_bytes()).is_ok()
        } else {
            // Browser → flock messages parse; flock → browser ones are replies (other types).
            flock_ws::fuzzing::parse(&text).is_ok() || !["open", "login", "answer", "candidate", "end-of-candidates"].iter().any(|t| text.starts_with(&format!("{{\"type\":\"{t}\"")))
        };
        assert!(ok, "{} is not a valid message", path.display());
    }
}
