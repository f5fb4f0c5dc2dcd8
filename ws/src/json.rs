//! The browser's JSON messages, one object per text frame (docs/PROTOCOL.md §10).
//!
//! Nothing here derives `Debug` on a message that can carry a credential, so no log line at
//! any level can print one.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Most personas an appliance may offer.
pub const MAX_PERSONAS: usize = 256;
/// Longest persona id or name, bytes.
pub const MAX_PERSONA_FIELD: usize = 255;

/// Browser → flock.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    Open {
        appliance: String,
    },
    Login {
        persona: String,
        credential: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(rename = "sdpMid", default)]
        sdp_mid: Option<String>,
    },
    EndOfCandidates,
}

impl Request {
    /// The message's type, for logs and error messages (never its fields).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Open { .. } => "open",
            Request::Login { .. } => "login",
            Request::Answer { .. } => "answer",
            Request::Candidate { .. } => "candidate",
            Request::EndOfCandidates => "end-of-candidates",
        }
    }
}

/// Parses one text frame; the error is serde's description, meant for the browser.
pub fn parse(text: &str) -> Result<Request, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Flock → browser.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Reply<'a> {
    Personas {
        personas: &'a [Persona],
    },
    CredentialsRequired,
    Accepted,
    Rejected {
        attempts_left: u8,
    },
    Offer {
        sdp: &'a str,
    },
    Candidate {
        candidate: &'a str,
        #[serde(rename = "sdpMid")]
        sdp_mid: Option<&'a str>,
    },
    EndOfCandidates,
    Error {
        code: &'a str,
        message: &'a str,
        /// With `rate-limited`: when the browser may try again.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl Reply<'_> {
    pub fn encode(&self) -> String {
        // Strings and integers only: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One persona as the browser sees it (the appliance's other fields are dropped).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Persona {
    pub id: String,
    pub name: String,
}

/// Decodes and checks the appliance's persona list (a JSON array of `{"id","name"}`).
pub fn decode_personas(bytes: &[u8]) -> Result<Vec<Persona>, String> {
    serde_json::from_slice::<Bounded>(bytes)
        .map(|b| b.0)
        .map_err(|e| e.to_string())
}

/// A persona list that stops at the bounds while parsing, not after.
struct Bounded(Vec<Persona>);

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bounded;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of personas")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bounded, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<Persona>()? {
                    if out.len() == MAX_PERSONAS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_PERSONAS} personas"
                        )));
                    }
                    if p.id.len() > MAX_PERSONA_FIELD || p.name.len() > MAX_PERSONA_FIELD {
                        return Err(de::Error::custom(format_args!(
                            "a persona id or name over {MAX_PERSONA_FIELD} bytes"
                        )));
                    }
                    out.push(p);
                }
                Ok(Bounded(out))
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert!(
            matches!(parse(r#"{"type":"open","appliance":"Box"}"#), Ok(Request::Open { appliance }) if appliance == "Box")
        );
        let c = parse(r#"{"type":"candidate","candidate":"candidate:1","sdpMid":null}"#)
            .ok()
            .unwrap();
        assert!(matches!(c, Request::Candidate { sdp_mid: None, .. }));
        let c = parse(r#"{"type":"candidate","candidate":"candidate:1"}"#)
            .ok()
            .unwrap();
        assert!(matches!(c, Request::Candidate { sdp_mid: None, .. }));
        assert!(matches!(
            parse(r#"{"type":"end-of-candidates"}"#),
            Ok(Request::EndOfCandidates)
        ));
        assert!(parse(r#"{"type":"hello"}"#).is_err());
        assert!(parse(r#"{"type":"open"}"#).is_err());
        assert!(parse(r#"{"type":"open","appliance":"a"} x"#).is_err());
        assert!(parse("[]").is_err());
    }

    #[test]
    fn replies() {
        let p = [Persona {
            id: "alice".into(),
            name: "Alice".into(),
        }];
        assert_eq!(
            Reply::Personas { personas: &p }.encode(),
            r#"{"type":"personas","personas":[{"id":"alice","name":"Alice"}]}"#
        );
        assert_eq!(
            Reply::CredentialsRequired.encode(),
            r#"{"type":"credentials-required"}"#
        );
        assert_eq!(
            Reply::Rejected { attempts_left: 2 }.encode(),
            r#"{"type":"rejected","attempts_left":2}"#
        );
        assert_eq!(
            Reply::Candidate {
                candidate: "candidate:1",
                sdp_mid: Some("0")
            }
            .encode(),
            r#"{"type":"candidate","candidate":"candidate:1","sdpMid":"0"}"#
        );
        assert_eq!(
            Reply::Error {
                code: "busy",
                message: "m",
                retry_after_ms: None
            }
            .encode(),
            r#"{"type":"error","code":"busy","message":"m"}"#
        );
    }

    #[test]
    fn persona_lists_are_checked() {
        let list =
            decode_personas(br#"[{"id":"a","name":"A","avatar":"x"},{"id":"g","name":"Guest"}]"#)
                .unwrap();
        assert_eq!(
            list[0],
            Persona {
                id: "a".into(),
                name: "A".into()
            }
        );
        assert_eq!(list.len(), 2);
        assert!(decode_personas(br#"[{"id":"a"}]"#).is_err());
        assert!(decode_personas(br#"{"id":"a","name":"A"}"#).is_err());
        let long = format!(r#"[{{"id":"a","name":"{}"}}]"#, "n".repeat(256));
        assert!(decode_personas(long.as_bytes()).is_err());
        let many = format!("[{}]", vec![r#"{"id":"a","name":"A"}"#; 257].join(","));
        assert!(decode_personas(many.as_bytes())
            .unwrap_err()
            .contains("more than 256"));
        let enough = format!("[{}]", vec![r#"{"id":"a","name":"A"}"#; 256].join(","));
        assert_eq!(decode_personas(enough.as_bytes()).unwrap().len(), 256);
    }
}
