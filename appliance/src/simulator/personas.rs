//! The --personas file: personas, passwords and policy, checked on load.

use crate::output::*;
use flock_appliance::Decision;
use flock_proto::wire::login::MAX_CREDENTIAL_LEN;
use std::sync::Arc;

/// The --personas file, checked.
#[derive(Clone)]
pub(crate) struct Personas(pub(crate) Arc<PersonasFile>);

/// Written by hand: never shows a password.
impl std::fmt::Debug for Personas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.0.persona.iter().map(|p| p.id.as_str()).collect();
        f.debug_struct("Personas")
            .field("credentials_required", &self.0.credentials_required)
            .field("ids", &ids)
            .finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonasFile {
    #[serde(default)]
    pub(crate) credentials_required: bool,
    #[serde(default)]
    pub(crate) persona: Vec<PersonaEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonaEntry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) deny: bool,
}

/// Personas the flock's gateway takes (more are refused there, so refuse them here first).
pub(crate) const MAX_PERSONAS: usize = 256;

pub(crate) fn parse_personas_file(path: &str) -> Result<Personas, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_personas(&text).map_err(|e| format!("{path}: {e}"))
}

pub(crate) fn parse_personas(text: &str) -> Result<Personas, String> {
    let file: PersonasFile =
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    if file.persona.is_empty() {
        return Err("no [[persona]] entries (each needs id, name and password)".into());
    }
    if file.persona.len() > MAX_PERSONAS {
        return Err(format!(
            "{} personas, at most {MAX_PERSONAS}",
            file.persona.len()
        ));
    }
    for (i, p) in file.persona.iter().enumerate() {
        let which = format!("persona {} (id {:?})", i + 1, p.id);
        if p.id.is_empty() || p.id.len() > 255 {
            return Err(format!("{which}: id must be 1 to 255 bytes"));
        }
        if p.name.len() > 255 {
            return Err(format!("{which}: name is over 255 bytes"));
        }
        if p.password.is_empty() || p.password.len() + 4 > MAX_CREDENTIAL_LEN {
            return Err(format!(
                "{which}: password must be 1 to {} bytes",
                MAX_CREDENTIAL_LEN - 4
            ));
        }
        if file.persona[..i].iter().any(|q| q.id == p.id) {
            return Err(format!("{which}: duplicate id"));
        }
    }
    Ok(Personas(Arc::new(file)))
}

impl Personas {
    /// The list served to the flock: ids and names only.
    pub(crate) fn list_json(&self) -> Option<Vec<u8>> {
        if self.0.credentials_required {
            return None;
        }
        let mut s = String::from("[");
        for (i, p) in self.0.persona.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"id\":");
            json_str(&mut s, &p.id);
            s.push_str(",\"name\":");
            json_str(&mut s, &p.name);
            s.push('}');
        }
        s.push(']');
        Some(s.into_bytes())
    }

    /// `persona` is the persona id, or the user name when credentials are entered separately:
    /// either way matched against `id`.
    pub(crate) fn decide(&self, persona: &str, credential: &[u8]) -> Decision {
        let Some(p) = self.0.persona.iter().find(|p| p.id == persona) else {
            return Decision::BadCredentials;
        };
        let good = credential
            .strip_prefix(b"pwd:")
            .is_some_and(|pwd| constant_time_eq(pwd, p.password.as_bytes()));
        match (good, p.deny) {
            (false, _) => Decision::BadCredentials,
            (true, true) => Decision::Deny,
            (true, false) => Decision::Accept,
        }
    }
}

/// Compares without an early exit, so timing does not tell how much of a password was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERSONAS: &str = r#"
[[persona]]
id = "alice"
name = "Alice \"A\""
password = "wonderland"

[[persona]]
id = "bob"
name = "Bob"
password = "builder"
deny = true
"#;

    #[test]
    fn personas_file() {
        let p = parse_personas(PERSONAS).unwrap();
        let list = String::from_utf8(p.list_json().unwrap()).unwrap();
        assert_eq!(
            list,
            r#"[{"id":"alice","name":"Alice \"A\""},{"id":"bob","name":"Bob"}]"#
        );
        assert!(!list.contains("wonderland") && !format!("{p:?}").contains("wonderland"));
        assert_eq!(p.decide("alice", b"pwd:wonderland"), Decision::Accept);
        assert_eq!(
            p.decide("alice", b"pwd:wonderlan"),
            Decision::BadCredentials
        );
        assert_eq!(p.decide("alice", b"wonderland"), Decision::BadCredentials);
        assert_eq!(
            p.decide("carol", b"pwd:wonderland"),
            Decision::BadCredentials
        );
        assert_eq!(p.decide("bob", b"pwd:builder"), Decision::Deny);
        assert_eq!(p.decide("bob", b"pwd:x"), Decision::BadCredentials);
        let p = parse_personas(&format!("credentials_required = true\n{PERSONAS}")).unwrap();
        assert_eq!(p.list_json(), None);
        assert_eq!(p.decide("alice", b"pwd:wonderland"), Decision::Accept);
    }

    #[test]
    fn bad_personas_files_say_why() {
        let err = |t: &str| parse_personas(t).unwrap_err();
        assert!(err("").contains("no [[persona]]"));
        assert!(
            err("[[persona]]\nid = \"a\"\nname = \"A\"\n").contains("password"),
            "{}",
            err("[[persona]]\nid = \"a\"\nname = \"A\"\n")
        );
        assert!(
            err("[[persona]]\nid = \"a\"\nname = \"A\"\npassword = \"p\"\ncolour = 1\n")
                .contains("unknown field")
        );
        assert!(
            err("[[persona]]\nid = \"\"\nname = \"A\"\npassword = \"p\"\n").contains("id must be")
        );
        assert!(
            err("[[persona]]\nid = \"a\"\nname = \"A\"\npassword = \"\"\n")
                .contains("password must be")
        );
        let twice = "[[persona]]\nid = \"a\"\nname = \"A\"\npassword = \"p\"\n".repeat(2);
        assert!(err(&twice).contains("persona 2 (id \"a\"): duplicate id"));
        assert!(err("credentials_required = \"yes\"").contains("invalid type"));
        assert!(parse_personas_file("/nonexistent/p.toml")
            .unwrap_err()
            .contains("cannot read /nonexistent/p.toml"));
    }
}
