//! Calling the chain of plugins, synchronously on the caller's thread. `Runner` calls these
//! from its pool; they are public for tests and tools. Chaining: every plugin must allow — the
//! first `Deny` stops the chain, `RetryAfter`s continue it and the longest wins; persona
//! filters are ANDed. Fail closed: an error code or a panic caught by the SDK denies (a filter
//! returns `None`: show nothing) and is counted.

use crate::abi;
use crate::loader::{Plugin, Plugins};
use crate::types::*;
use crate::view;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Plugins {
    pub fn admit_registration(&self, r: &Registration) -> Verdict {
        view::with_registration(r, |c| {
            self.chain(|p| {
                let f = p.table.admit_registration?;
                // SAFETY: valid view for the call; the plugin's own state.
                Some(self.verdict(p, "admit_registration", unsafe { f(p.state, c) }, None))
            })
        })
    }

    pub fn authorize_login(&self, l: &LoginAttempt) -> Verdict {
        view::with_login(l, |c| {
            self.chain(|p| {
                let f = p.table.authorize_login?;
                let mut retry_ms = 0u32;
                // SAFETY: as above; `retry_ms` outlives the call.
                let code = unsafe { f(p.state, c, &mut retry_ms) };
                Some(self.verdict(p, "authorize_login", code, Some(retry_ms)))
            })
        })
    }

    /// One flag per persona (kept or hidden); `None` when a plugin failed: show none.
    pub fn filter_personas(&self, q: &PersonaQuery) -> Option<Vec<bool>> {
        let mut shown = vec![true; q.personas.len()];
        view::with_persona_query(q, |c| {
            for p in &self.list {
                let Some(f) = p.table.filter_personas else {
                    continue;
                };
                let mut keep = vec![false; shown.len()];
                // SAFETY: valid view; `keep_index` expects `&mut Vec<bool>`.
                let code = unsafe { f(p.state, c, keep_index, (&raw mut keep).cast()) };
                if code != abi::ALLOW {
                    if code < 0 {
                        self.error(p, "filter_personas", code);
                    }
                    return None;
                }
                shown.iter_mut().zip(keep).for_each(|(s, k)| *s &= k);
            }
            Some(shown)
        })
    }

    /// Every plugin with an audit hook sees the event, in order.
    pub fn audit(&self, e: &AuditEvent) {
        view::with_audit(e, |c| {
            for p in &self.list {
                if let Some(f) = p.table.audit {
                    // SAFETY: valid view for the call.
                    unsafe { f(p.state, c) };
                }
            }
        })
    }

    /// Hook errors and panics so far (each one denied).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn has_audit(&self) -> bool {
        self.list.iter().any(|p| p.table.audit.is_some())
    }

    /// Runs `hook` over the plugins that have it (it returns `None` when one does not).
    fn chain(&self, mut hook: impl FnMut(&Plugin) -> Option<Verdict>) -> Verdict {
        let mut out = Verdict::Allow;
        for p in &self.list {
            match (hook(p), out) {
                (None | Some(Verdict::Allow), _) => {}
                (Some(Verdict::Deny), _) => return Verdict::Deny,
                (Some(Verdict::RetryAfter(d)), Verdict::RetryAfter(e)) => {
                    out = Verdict::RetryAfter(d.max(e))
                }
                (Some(v), _) => out = v,
            }
        }
        out
    }

    /// A return code as a verdict; `retry_ms` is `Some` for hooks that may answer RETRY_AFTER.
    fn verdict(&self, p: &Plugin, hook: &str, code: i32, retry_ms: Option<u32>) -> Verdict {
        match (code, retry_ms) {
            (abi::ALLOW, _) => Verdict::Allow,
            (abi::DENY, _) | (abi::RETRY_AFTER, None) => Verdict::Deny,
            (abi::RETRY_AFTER, Some(ms)) => Verdict::RetryAfter(Duration::from_millis(ms.into())),
            _ => {
                self.error(p, hook, code);
                Verdict::Deny
            }
        }
    }

    fn error(&self, p: &Plugin, hook: &str, code: i32) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(plugin = %p.name, hook, code, "plugin error: denied");
    }
}

unsafe extern "C" fn keep_index(ctx: *mut c_void, index: usize) {
    let keep = &mut *ctx.cast::<Vec<bool>>();
    if let Some(k) = keep.get_mut(index) {
        *k = true;
    }
}
