//! Event lines on stdout, human or JSON (`--json`).

use flock_appliance::webrtc::{PeerEvent, CHANNEL_LABEL};
use flock_appliance::{Event, SessionNonce};
use flock_proto::identity;
use flock_proto::wire::registration::code;
use flock_proto::Name;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;

/// Event lines on stdout, human or JSON.
pub(crate) struct Output {
    pub(crate) json: bool,
}

impl Output {
    pub(crate) fn line(&mut self, line: &str) {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }

    pub(crate) fn started(&mut self, name: &Name, local: SocketAddr, identity: &str) {
        let line = if self.json {
            json(&[
                ("event", J::S("started")),
                ("name", J::S(name.as_str())),
                ("local", J::A(local)),
                ("identity", J::S(identity)),
            ])
        } else {
            format!("{name}: started on {local}, identity {identity}")
        };
        self.line(&line);
    }

    /// A line about a log-in's WebRTC peer.
    pub(crate) fn peer(
        &mut self,
        name: &Name,
        session: &SessionNonce,
        event: &Result<PeerEvent, String>,
    ) {
        let line = if self.json {
            let n = ("name", J::S(name.as_str()));
            let hex = identity::to_hex(session);
            let s = ("session", J::S(&hex));
            match event {
                Ok(PeerEvent::Connected) => json(&[("event", J::S("webrtc_connected")), n, s]),
                Ok(PeerEvent::ChannelOpen) => json(&[
                    ("event", J::S("channel_open")),
                    n,
                    s,
                    ("label", J::S(CHANNEL_LABEL)),
                ]),
                Ok(PeerEvent::Message(text)) => json(&[
                    ("event", J::S("channel_message")),
                    n,
                    s,
                    ("text", J::S(shorten(text))),
                ]),
                Ok(PeerEvent::Stopped(reason)) => json(&[
                    ("event", J::S("webrtc_stopped")),
                    n,
                    s,
                    ("reason", J::S(reason)),
                ]),
                Err(e) => json(&[("event", J::S("webrtc_error")), n, s, ("error", J::S(e))]),
            }
        } else {
            let what = match event {
                Ok(PeerEvent::Connected) => "webrtc connected".to_string(),
                Ok(PeerEvent::ChannelOpen) => format!("data channel {CHANNEL_LABEL:?} open"),
                Ok(PeerEvent::Message(text)) => format!("message {:?}, echoed", shorten(text)),
                Ok(PeerEvent::Stopped(reason)) => format!("webrtc peer closed: {reason}"),
                Err(e) => format!("webrtc: {e}"),
            };
            format!(
                "{name}: session {}: {what}",
                identity::to_hex(&session[..4])
            )
        };
        self.line(&line);
    }

    pub(crate) fn event(&mut self, name: &Name, event: &Event) {
        if !self.json {
            self.line(&format!("{name}: {event}"));
            if let Event::RemoteAnswer { sdp, .. } = event {
                for l in sdp.lines() {
                    self.line(&format!("    {l}"));
                }
            }
            return;
        }
        let n = ("name", J::S(name.as_str()));
        let hex = |s: &SessionNonce| identity::to_hex(s);
        let line = match event {
            Event::Registered { mapped } => {
                json(&[("event", J::S("registered")), n, ("mapped", J::A(*mapped))])
            }
            Event::MappedAddressChanged { old, new } => json(&[
                ("event", J::S("mapped_address_changed")),
                n,
                ("old", J::A(*old)),
                ("new", J::A(*new)),
            ]),
            Event::KeptAlive { mapped } => {
                json(&[("event", J::S("kept_alive")), n, ("mapped", J::A(*mapped))])
            }
            Event::TokenRefused => json(&[("event", J::S("token_refused")), n]),
            Event::Refused { code: c } => json(&[
                ("event", J::S("refused")),
                n,
                ("code", J::N(u64::from(*c))),
                ("reason", J::S(code::reason(*c))),
            ]),
            Event::Redirected { from, to } => json(&[
                ("event", J::S("redirected")),
                n,
                ("from", J::A(*from)),
                ("to", J::A(*to)),
            ]),
            Event::CheckAnswered { from } => {
                json(&[("event", J::S("check_answered")), n, ("from", J::A(*from))])
            }
            Event::GaveUp => json(&[("event", J::S("gave_up")), n]),
            Event::LoginAccepted { session, persona } => json(&[
                ("event", J::S("login_accepted")),
                n,
                ("session", J::S(&hex(session))),
                ("persona", J::S(persona)),
            ]),
            Event::LoginRefused {
                session,
                persona,
                code: c,
            } => json(&[
                ("event", J::S("login_refused")),
                n,
                ("session", J::S(&hex(session))),
                ("persona", J::S(persona)),
                ("code", J::N(u64::from(*c))),
                ("reason", J::S(flock_proto::wire::login::code::reason(*c))),
            ]),
            Event::RemoteAnswer { session, sdp } => json(&[
                ("event", J::S("remote_answer")),
                n,
                ("session", J::S(&hex(session))),
                ("sdp", J::S(sdp)),
            ]),
            Event::RemoteCandidate { session, candidate } => json(&[
                ("event", J::S("remote_candidate")),
                n,
                ("session", J::S(&hex(session))),
                ("candidate", J::S(&candidate.candidate)),
                ("mid", J::S(candidate.mid.as_deref().unwrap_or(""))),
            ]),
            Event::RemoteEndOfCandidates { session } => json(&[
                ("event", J::S("remote_end_of_candidates")),
                n,
                ("session", J::S(&hex(session))),
            ]),
            Event::SessionDone { session } => json(&[
                ("event", J::S("session_done")),
                n,
                ("session", J::S(&hex(session))),
            ]),
            Event::SessionFailed { session, reason } => json(&[
                ("event", J::S("session_failed")),
                n,
                ("session", J::S(&hex(session))),
                ("reason", J::S(&reason.to_string())),
            ]),
        };
        self.line(&line);
    }
}

/// A data-channel message as printed: at most 200 characters.
pub(crate) fn shorten(text: &str) -> &str {
    text.char_indices()
        .nth(200)
        .map_or(text, |(i, _)| &text[..i])
}

/// A JSON value of an event line.
pub(crate) enum J<'a> {
    S(&'a str),
    A(SocketAddr),
    N(u64),
}

/// One flat JSON object.
pub(crate) fn json(fields: &[(&str, J<'_>)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_str(&mut s, k);
        s.push(':');
        match v {
            J::S(v) => json_str(&mut s, v),
            J::A(a) => json_str(&mut s, &a.to_string()),
            J::N(n) => {
                let _ = write!(s, "{n}");
            }
        }
    }
    s.push('}');
    s
}

pub(crate) fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines() {
        let a: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(
            json(&[
                ("event", J::S("registered")),
                ("name", J::S("x")),
                ("mapped", J::A(a)),
                ("code", J::N(7))
            ]),
            r#"{"event":"registered","name":"x","mapped":"[2001:db8::1]:5","code":7}"#
        );
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\u000a""#);
    }
}
