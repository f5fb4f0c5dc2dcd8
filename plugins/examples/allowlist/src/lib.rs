//! Example plugin: admits only the appliances listed, each with its key fingerprint.
//!
//! Config: the path of a file with lines `name fingerprint-hex` (`#` starts a comment). An
//! unlisted name, or a listed one with another key, is refused.

#![forbid(unsafe_code)]

use flock_plugins::sdk::*;
use std::collections::HashMap;

struct Allowlist {
    /// name → lowercase hex fingerprint.
    keys: HashMap<String, String>,
}

impl Plugin for Allowlist {
    fn init(config: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(config).map_err(|e| format!("{config}: {e}"))?;
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default();
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                [] => {}
                [name, fp] if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    keys.insert(name.to_ascii_lowercase(), fp.to_ascii_lowercase());
                }
                _ => {
                    return Err(format!(
                        "{config}:{}: expected `name fingerprint-hex`",
                        n + 1
                    ))
                }
            }
        }
        Ok(Allowlist { keys })
    }

    fn admit_registration(&self, r: &Registration) -> Verdict {
        match self.keys.get(&r.name) {
            Some(fp) if *fp == r.fingerprint_hex() => Verdict::Allow,
            _ => Verdict::Deny,
        }
    }
}

flock_plugin!(Allowlist, "allowlist");
