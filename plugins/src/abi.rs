//! The C ABI, version 1: the `#[repr(C)]` types that `include/flock_plugin.h` declares.
//!
//! Promise: `abi_version` stays 1 for as long as changes only *append* fields, to the plugin
//! table or to a request struct. Every struct that may grow starts with its size, so either
//! side can tell which fields the other one knows: the host reads the plugin table's
//! `struct_size`, plugins read a request's `struct_size`. A field is never removed, reordered
//! or given a new meaning; anything that needs that is `abi_version` 2 and a new symbol
//! (`flock_plugin_v2`). `tests/abi_header.rs` checks these layouts against the C header.

use std::ffi::{c_char, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version the host speaks. A plugin reporting anything else is refused at start.
pub const ABI_VERSION: u32 = 1;
/// The symbol every plugin exports: [`PluginEntry`].
pub const SYMBOL: &str = "flock_plugin_v1";

/// Hook results. Anything else is an error, and errors deny.
pub const ALLOW: i32 = 0;
pub const DENY: i32 = 1;
/// `authorize_login` only: deny now, the client may try again after `retry_after_ms`.
pub const RETRY_AFTER: i32 = 2;
/// Conventional error codes (any negative value is an error).
pub const ERROR: i32 = -1;
pub const PANICKED: i32 = -2;

/// `FlockAuditEvent::kind`.
pub const AUDIT_REGISTERED: u32 = 1;
pub const AUDIT_EXPIRED: u32 = 2;
pub const AUDIT_ADDRESS_CHANGED: u32 = 3;
pub const AUDIT_LOGIN_OK: u32 = 4;
pub const AUDIT_LOGIN_FAILED: u32 = 5;

/// A borrowed UTF-8 string, *not* NUL-terminated, valid only during the call it is passed to.
/// `ptr` may be NULL when `len` is 0 (an absent optional string is NULL/0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockStr {
    pub ptr: *const u8,
    pub len: usize,
}

/// An IP address and port, both as text and as bytes (C authors pick whichever is easier).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockAddr {
    /// `"192.0.2.1:3478"` or `"[2001:db8::1]:3478"`.
    pub text: FlockStr,
    /// 4, 6, or 0 for "no address" (an optional field that is absent).
    pub family: u8,
    /// Network byte order. IPv4 fills `ip[0..4]`, the rest is zero.
    pub ip: [u8; 16],
    /// Host byte order.
    pub port: u16,
}

/// `admit_registration`: a first registration of a name, or a known name with a new key. Never
/// called for keep-alives.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockRegistration {
    pub struct_size: u32,
    /// 0: the name is new to this server; 1: the name is known with another key.
    pub key_change: u32,
    /// The normalized appliance name (lowercase `[a-z0-9._-]`).
    pub name: FlockStr,
    /// SHA-256 of the appliance's Ed25519 public key.
    pub fingerprint: [u8; 32],
    /// The address the registration came from.
    pub addr: FlockAddr,
}

/// `authorize_login`: a browser's log-in attempt (one per credential sent).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockLogin {
    pub struct_size: u32,
    pub appliance: FlockStr,
    /// The persona id (or the user name typed).
    pub persona: FlockStr,
    /// The browser's address as the gateway sees it.
    pub client: FlockAddr,
    /// The websocket's `Origin` header; NULL/0 when there was none.
    pub origin: FlockStr,
}

/// One persona of an appliance's list.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockPersona {
    pub id: FlockStr,
    pub name: FlockStr,
}

/// `filter_personas`: the list an appliance offers, before a browser sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockPersonaQuery {
    pub struct_size: u32,
    pub appliance: FlockStr,
    pub client: FlockAddr,
    pub personas: *const FlockPersona,
    pub count: usize,
}

/// `audit`: something happened. Fields that do not apply to `kind` are empty (NULL/0, family 0,
/// zero fingerprint).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockAuditEvent {
    pub struct_size: u32,
    /// `AUDIT_*`.
    pub kind: u32,
    /// The appliance name (every kind).
    pub name: FlockStr,
    /// Registered / expired: the appliance's address; address changed: the new one; log-ins:
    /// the browser's address.
    pub addr: FlockAddr,
    /// Address changed: the previous address.
    pub old_addr: FlockAddr,
    /// Registered / expired / address changed: the appliance's key fingerprint.
    pub fingerprint: [u8; 32],
    /// Log-ins: the persona id.
    pub persona: FlockStr,
    /// Log-in failed: why, a short word such as `"bad-credentials"` or `"denied"`.
    pub reason: FlockStr,
}

/// Host callback for `init`: the reason init failed (copied by the host during the call).
pub type ErrorFn = unsafe extern "C" fn(ctx: *mut c_void, message: FlockStr);
/// Host callback for `filter_personas`: keep persona `index` (others are hidden).
pub type KeepFn = unsafe extern "C" fn(ctx: *mut c_void, index: usize);

pub type InitFn = unsafe extern "C" fn(
    config: FlockStr,
    state_out: *mut *mut c_void,
    error: ErrorFn,
    error_ctx: *mut c_void,
) -> i32;
pub type AdmitFn = unsafe extern "C" fn(state: *mut c_void, r: *const FlockRegistration) -> i32;
pub type LoginFn =
    unsafe extern "C" fn(state: *mut c_void, l: *const FlockLogin, retry_after_ms: *mut u32) -> i32;
pub type FilterFn = unsafe extern "C" fn(
    state: *mut c_void,
    q: *const FlockPersonaQuery,
    keep: KeepFn,
    keep_ctx: *mut c_void,
) -> i32;
pub type AuditFn = unsafe extern "C" fn(state: *mut c_void, e: *const FlockAuditEvent);

/// The table a plugin's `flock_plugin_v1()` returns; it must live as long as the process
/// (a `static`). A NULL hook has no opinion: allow, keep every persona, ignore the event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlockPluginV1 {
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// `sizeof` the table as the plugin was compiled: fields past it are treated as NULL.
    pub struct_size: u32,
    /// Static, NUL-terminated; used in logs and errors. NULL: the file name is used.
    pub name: *const c_char,
    /// Called once, at start, before any hook: parses `config` (the plugin's settings string
    /// from flockd's config) and stores the plugin's state in `*state_out`, which every hook
    /// then receives. Non-zero refuses the start; call `error(error_ctx, msg)` first to say why.
    /// NULL: no settings, state NULL.
    pub init: Option<InitFn>,
    /// [`ALLOW`] / [`DENY`] / error.
    pub admit_registration: Option<AdmitFn>,
    /// [`ALLOW`] / [`DENY`] / [`RETRY_AFTER`] (with `*retry_after_ms` set) / error.
    pub authorize_login: Option<LoginFn>,
    /// Call `keep(keep_ctx, i)` for each persona the browser may see, then return [`ALLOW`];
    /// an error hides every persona.
    pub filter_personas: Option<FilterFn>,
    /// No result; must not block for long (events queue up, and are dropped when the queue is full).
    pub audit: Option<AuditFn>,
}

/// What `flock_plugin_v1` is.
pub type PluginEntry = unsafe extern "C" fn() -> *const FlockPluginV1;

/// The smallest table the host accepts: version 1 as first published. Later appended fields
/// are optional, so this never grows.
pub const MIN_STRUCT_SIZE: u32 = std::mem::size_of::<FlockPluginV1>() as u32;

// The tables are immutable statics shared by every thread (the ABI requires thread-safe hooks).
unsafe impl Sync for FlockPluginV1 {}
unsafe impl Send for FlockPluginV1 {}

impl FlockStr {
    pub const EMPTY: FlockStr = FlockStr {
        ptr: std::ptr::null(),
        len: 0,
    };

    pub fn new(s: &str) -> FlockStr {
        FlockStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    pub fn opt(s: Option<&str>) -> FlockStr {
        s.map_or(FlockStr::EMPTY, FlockStr::new)
    }

    /// # Safety
    /// `ptr` must point at `len` readable bytes for the lifetime `'a` (or `len` be 0).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }

    /// Lossy: the host always passes valid UTF-8, but a plugin's error message may not be.
    ///
    /// # Safety
    /// As [`FlockStr::as_bytes`].
    pub unsafe fn to_string_lossy(self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    /// `None` for NULL (an absent optional string).
    ///
    /// # Safety
    /// As [`FlockStr::as_bytes`].
    pub unsafe fn to_option(self) -> Option<String> {
        (!self.ptr.is_null()).then(|| self.to_string_lossy())
    }
}

impl FlockAddr {
    pub const NONE: FlockAddr = FlockAddr {
        text: FlockStr::EMPTY,
        family: 0,
        ip: [0; 16],
        port: 0,
    };

    /// `text` must be `addr.to_string()`, kept alive by the caller for the call.
    pub fn new(addr: SocketAddr, text: &str) -> FlockAddr {
        let mut ip = [0; 16];
        let family = match addr.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                6
            }
        };
        FlockAddr {
            text: FlockStr::new(text),
            family,
            ip,
            port: addr.port(),
        }
    }

    /// From the bytes (`text` is ignored); `None` for family 0 or an unknown family.
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        let ip = match self.family {
            4 => IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            )),
            6 => IpAddr::V6(Ipv6Addr::from(self.ip)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }
}

/// `struct_size` of a request struct.
pub(crate) const fn size_u32<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}
