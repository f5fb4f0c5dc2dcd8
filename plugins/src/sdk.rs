//! Writing a plugin in Rust without `unsafe`: implement [`Plugin`], then
//! `flock_plugin!(MyPlugin, "my-plugin");` in a `cdylib` crate. The macro exports
//! `flock_plugin_v1` with trampolines that copy the host's borrowed C views into owned values
//! and catch panics: a panic becomes an error code (the host denies) instead of unwinding
//! across `extern "C"`, which would abort the server. Do not build plugins with
//! `panic = "abort"`.
//!
//! ```no_run
//! use flock_plugins::sdk::*;
//!
//! struct OnlyAlice;
//!
//! impl Plugin for OnlyAlice {
//!     fn init(_config: &str) -> Result<Self, String> {
//!         Ok(OnlyAlice)
//!     }
//!     fn authorize_login(&self, l: &LoginAttempt) -> Verdict {
//!         if l.persona == "alice" { Verdict::Allow } else { Verdict::Deny }
//!     }
//! }
//!
//! flock_plugin!(OnlyAlice, "only-alice");
//! ```

use crate::abi::*;
use crate::view;
use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use crate::flock_plugin;
pub use crate::types::{AuditEvent, LoginAttempt, Persona, PersonaQuery, Registration, Verdict};

/// A policy plugin. One value is created by `init` at start and shared by every thread that
/// runs hooks, so hooks take `&self` (use a `Mutex` or atomics for mutable state). Hooks should
/// be quick: the server waits at most its budget (e.g. 50 ms) and then denies.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// `config` is the plugin's settings string from flockd's config. An `Err` stops flockd's
    /// start with that message.
    fn init(config: &str) -> Result<Self, String>;

    /// First registration of a name, or a known name with a new key.
    fn admit_registration(&self, _r: &Registration) -> Verdict {
        Verdict::Allow
    }

    /// Each credential a browser sends. `RetryAfter` tells the browser when to try again.
    fn authorize_login(&self, _l: &LoginAttempt) -> Verdict {
        Verdict::Allow
    }

    /// One flag per persona of `q.personas`: `true` shows it. Missing flags hide.
    fn filter_personas(&self, q: &PersonaQuery) -> Vec<bool> {
        vec![true; q.personas.len()]
    }

    /// Runs on the host's audit thread, in order; slow audits make the host drop events.
    fn audit(&self, _e: &AuditEvent) {}
}

/// Exports `flock_plugin_v1` for `$ty: Plugin`, named `$name` in the host's logs.
#[macro_export]
macro_rules! flock_plugin {
    ($ty:ty, $name:literal) => {
        /// The Flock plugin entry point (ABI version 1).
        #[unsafe(no_mangle)]
        pub extern "C" fn flock_plugin_v1() -> *const $crate::abi::FlockPluginV1 {
            static TABLE: $crate::abi::FlockPluginV1 =
                $crate::sdk::table::<$ty>(concat!($name, "\0"));
            &TABLE
        }
    };
}

/// The table for `P`; `name` must end with a NUL (the macro adds it).
#[doc(hidden)]
pub const fn table<P: Plugin>(name: &'static str) -> FlockPluginV1 {
    let bytes = name.as_bytes();
    assert!(
        !bytes.is_empty() && bytes[bytes.len() - 1] == 0,
        "name must end with NUL"
    );
    FlockPluginV1 {
        abi_version: ABI_VERSION,
        struct_size: std::mem::size_of::<FlockPluginV1>() as u32,
        name: bytes.as_ptr().cast(),
        init: Some(init::<P>),
        admit_registration: Some(admit::<P>),
        authorize_login: Some(login::<P>),
        filter_personas: Some(filter::<P>),
        audit: Some(audit::<P>),
    }
}

/// Runs `f`, turning a panic into `PANICKED`.
fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(PANICKED)
}

/// `retry_after_ms`: the out-pointer of hooks that may answer RETRY_AFTER.
fn code(v: Verdict, retry_after_ms: Option<&mut u32>) -> i32 {
    match (v, retry_after_ms) {
        (Verdict::Allow, _) => ALLOW,
        (Verdict::Deny, _) | (Verdict::RetryAfter(_), None) => DENY,
        (Verdict::RetryAfter(d), Some(out)) => {
            // Rounded up: "retry after 0 ms" would invite an immediate retry.
            *out = d
                .as_nanos()
                .div_ceil(1_000_000)
                .try_into()
                .unwrap_or(u32::MAX);
            RETRY_AFTER
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("?")
}

unsafe extern "C" fn init<P: Plugin>(
    config: FlockStr,
    state_out: *mut *mut c_void,
    error: ErrorFn,
    error_ctx: *mut c_void,
) -> i32 {
    let config = config.to_string_lossy();
    let message = match catch_unwind(|| P::init(&config)) {
        Ok(Ok(plugin)) => {
            // Never freed: plugins live as long as the process.
            *state_out = Box::into_raw(Box::new(plugin)).cast();
            return ALLOW;
        }
        Ok(Err(message)) => message,
        Err(panic) => format!("init panicked: {}", panic_message(&*panic)),
    };
    error(error_ctx, FlockStr::new(&message));
    ERROR
}

unsafe extern "C" fn admit<P: Plugin>(state: *mut c_void, r: *const FlockRegistration) -> i32 {
    guard(|| {
        code(
            (*state.cast::<P>()).admit_registration(&view::registration(&*r)),
            None,
        )
    })
}

unsafe extern "C" fn login<P: Plugin>(
    state: *mut c_void,
    l: *const FlockLogin,
    retry_after_ms: *mut u32,
) -> i32 {
    guard(|| {
        code(
            (*state.cast::<P>()).authorize_login(&view::login(&*l)),
            retry_after_ms.as_mut(),
        )
    })
}

unsafe extern "C" fn filter<P: Plugin>(
    state: *mut c_void,
    q: *const FlockPersonaQuery,
    keep: KeepFn,
    keep_ctx: *mut c_void,
) -> i32 {
    guard(|| {
        let q = view::persona_query(&*q);
        let flags = (*state.cast::<P>()).filter_personas(&q);
        for (i, _) in flags
            .iter()
            .take(q.personas.len())
            .enumerate()
            .filter(|(_, k)| **k)
        {
            keep(keep_ctx, i);
        }
        ALLOW
    })
}

unsafe extern "C" fn audit<P: Plugin>(state: *mut c_void, e: *const FlockAuditEvent) {
    guard(|| {
        if let Some(e) = view::audit(&*e) {
            (*state.cast::<P>()).audit(&e);
        }
        ALLOW
    });
}
