//! Owned requests ↔ their borrowed C forms. The host side builds a C view that lives for one
//! call; the SDK side copies a C view into owned values for a Rust plugin.

use crate::abi::*;
use crate::types::*;
use std::net::{Ipv4Addr, SocketAddr};

const NO_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

pub(crate) fn with_registration<R>(r: &Registration, f: impl FnOnce(&FlockRegistration) -> R) -> R {
    let text = r.addr.to_string();
    f(&FlockRegistration {
        struct_size: size_u32::<FlockRegistration>(),
        key_change: r.key_change.into(),
        name: FlockStr::new(&r.name),
        fingerprint: r.fingerprint,
        addr: FlockAddr::new(r.addr, &text),
    })
}

pub(crate) fn with_login<R>(l: &LoginAttempt, f: impl FnOnce(&FlockLogin) -> R) -> R {
    let text = l.client.to_string();
    f(&FlockLogin {
        struct_size: size_u32::<FlockLogin>(),
        appliance: FlockStr::new(&l.appliance),
        persona: FlockStr::new(&l.persona),
        client: FlockAddr::new(l.client, &text),
        origin: FlockStr::opt(l.origin.as_deref()),
    })
}

pub(crate) fn with_persona_query<R>(
    q: &PersonaQuery,
    f: impl FnOnce(&FlockPersonaQuery) -> R,
) -> R {
    let text = q.client.to_string();
    let personas: Vec<FlockPersona> = q
        .personas
        .iter()
        .map(|p| FlockPersona {
            id: FlockStr::new(&p.id),
            name: FlockStr::new(&p.name),
        })
        .collect();
    f(&FlockPersonaQuery {
        struct_size: size_u32::<FlockPersonaQuery>(),
        appliance: FlockStr::new(&q.appliance),
        client: FlockAddr::new(q.client, &text),
        personas: personas.as_ptr(),
        count: personas.len(),
    })
}

pub(crate) fn with_audit<R>(e: &AuditEvent, f: impl FnOnce(&FlockAuditEvent) -> R) -> R {
    let (kind, name, fingerprint, addr, old, persona, reason) = match e {
        AuditEvent::Registered {
            name,
            fingerprint,
            addr,
        } => (
            AUDIT_REGISTERED,
            name,
            *fingerprint,
            *addr,
            None,
            None,
            None,
        ),
        AuditEvent::Expired {
            name,
            fingerprint,
            addr,
        } => (AUDIT_EXPIRED, name, *fingerprint, *addr, None, None, None),
        AuditEvent::AddressChanged {
            name,
            fingerprint,
            old,
            new,
        } => (
            AUDIT_ADDRESS_CHANGED,
            name,
            *fingerprint,
            *new,
            Some(*old),
            None,
            None,
        ),
        AuditEvent::LoginOk {
            appliance,
            persona,
            client,
        } => (
            AUDIT_LOGIN_OK,
            appliance,
            [0; 32],
            *client,
            None,
            Some(persona),
            None,
        ),
        AuditEvent::LoginFailed {
            appliance,
            persona,
            client,
            reason,
        } => (
            AUDIT_LOGIN_FAILED,
            appliance,
            [0; 32],
            *client,
            None,
            Some(persona),
            Some(reason),
        ),
    };
    let addr_text = addr.to_string();
    let old_text = old.map(|a| a.to_string()).unwrap_or_default();
    f(&FlockAuditEvent {
        struct_size: size_u32::<FlockAuditEvent>(),
        kind,
        name: FlockStr::new(name),
        addr: FlockAddr::new(addr, &addr_text),
        old_addr: old.map_or(FlockAddr::NONE, |a| FlockAddr::new(a, &old_text)),
        fingerprint,
        persona: FlockStr::opt(persona.map(String::as_str)),
        reason: FlockStr::opt(reason.map(String::as_str)),
    })
}

fn addr(a: &FlockAddr) -> SocketAddr {
    a.to_socket_addr().unwrap_or(NO_ADDR)
}

/// # Safety
/// `r` and the strings it points at are valid (the host's promise for the call).
pub(crate) unsafe fn registration(r: &FlockRegistration) -> Registration {
    Registration {
        name: r.name.to_string_lossy(),
        fingerprint: r.fingerprint,
        addr: addr(&r.addr),
        key_change: r.key_change != 0,
    }
}

/// # Safety
/// As [`registration`].
pub(crate) unsafe fn login(l: &FlockLogin) -> LoginAttempt {
    LoginAttempt {
        appliance: l.appliance.to_string_lossy(),
        persona: l.persona.to_string_lossy(),
        client: addr(&l.client),
        origin: l.origin.to_option(),
    }
}

/// # Safety
/// As [`registration`]; `personas` points at `count` entries.
pub(crate) unsafe fn persona_query(q: &FlockPersonaQuery) -> PersonaQuery {
    let list = if q.count == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(q.personas, q.count)
    };
    PersonaQuery {
        appliance: q.appliance.to_string_lossy(),
        client: addr(&q.client),
        personas: list
            .iter()
            .map(|p| Persona {
                id: p.id.to_string_lossy(),
                name: p.name.to_string_lossy(),
            })
            .collect(),
    }
}

/// `None` for a kind this SDK does not know (a newer host): the plugin ignores it.
///
/// # Safety
/// As [`registration`].
pub(crate) unsafe fn audit(e: &FlockAuditEvent) -> Option<AuditEvent> {
    let name = e.name.to_string_lossy();
    let fingerprint = e.fingerprint;
    Some(match e.kind {
        AUDIT_REGISTERED => AuditEvent::Registered {
            name,
            fingerprint,
            addr: addr(&e.addr),
        },
        AUDIT_EXPIRED => AuditEvent::Expired {
            name,
            fingerprint,
            addr: addr(&e.addr),
        },
        AUDIT_ADDRESS_CHANGED => AuditEvent::AddressChanged {
            name,
            fingerprint,
            old: addr(&e.old_addr),
            new: addr(&e.addr),
        },
        AUDIT_LOGIN_OK => AuditEvent::LoginOk {
            appliance: name,
            persona: e.persona.to_string_lossy(),
            client: addr(&e.addr),
        },
        AUDIT_LOGIN_FAILED => AuditEvent::LoginFailed {
            appliance: name,
            persona: e.persona.to_string_lossy(),
            client: addr(&e.addr),
            reason: e.reason.to_string_lossy(),
        },
        _ => return None,
    })
}
