//! Test-only plugin: misbehaves on request, for the loader, runner and flockd tests.
//!
//! Config, comma-separated: `init=fail`, `init=panic`, `deny=NAME` (registrations and log-ins
//! of appliance NAME), `hide=ID` (persona), `retry=PERSONA:MS`, `log=PATH` (appends one
//! line per hook call or event, `<hook> <request:?>`). Any appliance name or persona `sleep-MS` sleeps MS milliseconds and then
//! allows (audit: registrations only); `panic` panics.

#![forbid(unsafe_code)]

use flock_plugins::sdk::*;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct Testkit {
    deny: Vec<String>,
    hide: Vec<String>,
    retry: Vec<(String, Duration)>,
    log: Option<Mutex<std::fs::File>>,
}

/// Sleeps or panics when a request field asks for it.
fn misbehave(field: &str) {
    if field == "panic" {
        panic!("testkit asked to panic");
    }
    if let Some(ms) = field.strip_prefix("sleep-").and_then(|ms| ms.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

impl Plugin for Testkit {
    fn init(config: &str) -> Result<Self, String> {
        let mut t = Testkit::default();
        for item in config.split(',').filter(|s| !s.is_empty()) {
            match item.split_once('=').ok_or(format!("bad item `{item}`"))? {
                ("init", "fail") => return Err("asked to fail".into()),
                ("init", "panic") => panic!("asked to panic in init"),
                ("deny", name) => t.deny.push(name.into()),
                ("hide", id) => t.hide.push(id.into()),
                ("retry", spec) => {
                    let (persona, ms) = spec.split_once(':').ok_or("retry=PERSONA:MS")?;
                    t.retry.push((
                        persona.into(),
                        Duration::from_millis(ms.parse().map_err(|_| "retry ms")?),
                    ));
                }
                ("log", path) => {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path);
                    t.log = Some(Mutex::new(file.map_err(|e| format!("{path}: {e}"))?));
                }
                _ => return Err(format!("unknown item `{item}`")),
            }
        }
        Ok(t)
    }

    fn admit_registration(&self, r: &Registration) -> Verdict {
        self.log("admit", r);
        misbehave(&r.name);
        if self.deny.contains(&r.name) {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }

    fn authorize_login(&self, l: &LoginAttempt) -> Verdict {
        self.log("login", l);
        misbehave(&l.appliance);
        misbehave(&l.persona);
        if self.deny.contains(&l.appliance) {
            return Verdict::Deny;
        }
        match self.retry.iter().find(|(p, _)| *p == l.persona) {
            Some((_, d)) => Verdict::RetryAfter(*d),
            None => Verdict::Allow,
        }
    }

    fn filter_personas(&self, q: &PersonaQuery) -> Vec<bool> {
        self.log("filter", q);
        misbehave(&q.appliance);
        q.personas
            .iter()
            .map(|p| !self.hide.contains(&p.id))
            .collect()
    }

    fn audit(&self, e: &AuditEvent) {
        self.log("audit", e);
        if let AuditEvent::Registered { name, .. } = e {
            misbehave(name);
        }
    }
}

impl Testkit {
    fn log(&self, hook: &str, request: &dyn std::fmt::Debug) {
        if let Some(file) = &self.log {
            let _ = writeln!(
                file.lock().unwrap_or_else(|p| p.into_inner()),
                "{hook} {request:?}"
            );
        }
    }
}

flock_plugin!(Testkit, "testkit");
