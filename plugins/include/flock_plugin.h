/*
 * flock_plugin.h: the C ABI of Flock policy plugins, version 1.
 *
 * Hand-written to match the Rust definitions in plugins/src/abi.rs; the test
 * plugins/tests/abi_header.rs compiles against this file and compares every size and offset.
 *
 * A plugin is a shared library exporting one function, flock_plugin_v1(), that returns a
 * pointer to a static flock_plugin_table. The host (flockd) calls init once at start, then
 * the hooks from several threads at once: every hook must be thread-safe. Libraries are never
 * unloaded. See docs/PLUGINS.md.
 *
 * Versioning promise: FLOCK_PLUGIN_ABI_VERSION stays 1 while changes only APPEND fields to
 * the table or to a request struct. The host treats table fields beyond the plugin's
 * struct_size as NULL; a plugin that wants a request field added later checks the request's
 * struct_size first. Nothing is removed, reordered or redefined within version 1.
 *
 * Memory: strings are borrowed pointer+length UTF-8, NOT NUL-terminated, valid only during
 * the call (copy what you keep). No memory crosses the boundary in either direction: data
 * comes back through host callbacks (error, keep).
 */
#ifndef FLOCK_PLUGIN_H
#define FLOCK_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLOCK_PLUGIN_ABI_VERSION 1

#if defined(_WIN32)
#define FLOCK_PLUGIN_EXPORT __declspec(dllexport)
#else
#define FLOCK_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Hook results. Any other value is an error; errors deny (fail closed) and are counted. */
#define FLOCK_ALLOW 0
#define FLOCK_DENY 1
#define FLOCK_RETRY_AFTER 2 /* authorize_login only: set *retry_after_ms */
#define FLOCK_ERROR (-1)    /* any negative value is an error */

/* flock_audit_event.kind; ignore kinds you do not know (newer hosts may add some). */
#define FLOCK_AUDIT_REGISTERED 1
#define FLOCK_AUDIT_EXPIRED 2
#define FLOCK_AUDIT_ADDRESS_CHANGED 3
#define FLOCK_AUDIT_LOGIN_OK 4
#define FLOCK_AUDIT_LOGIN_FAILED 5

/* Borrowed UTF-8, not NUL-terminated. ptr may be NULL when len is 0; an absent optional
 * string is {NULL, 0}. */
typedef struct flock_str {
    const uint8_t *ptr;
    size_t len;
} flock_str;

/* An IP address and port, as text and as bytes. */
typedef struct flock_addr {
    flock_str text;  /* "192.0.2.1:3478" or "[2001:db8::1]:3478" */
    uint8_t family;  /* 4, 6, or 0 when absent */
    uint8_t ip[16];  /* network byte order; IPv4 in ip[0..3], rest zero */
    uint16_t port;   /* host byte order */
} flock_addr;

/* admit_registration: a name registering for the first time, or a known name with a new
 * key. Never called for keep-alives. */
typedef struct flock_registration {
    uint32_t struct_size;
    uint32_t key_change;     /* 0: new name; 1: known name, new key */
    flock_str name;          /* normalized: lowercase [a-z0-9._-] */
    uint8_t fingerprint[32]; /* SHA-256 of the appliance's Ed25519 public key */
    flock_addr addr;         /* where the registration came from */
} flock_registration;

/* authorize_login: one log-in attempt (each credential a browser sends). */
typedef struct flock_login {
    uint32_t struct_size;
    flock_str appliance;
    flock_str persona;  /* persona id, or the user name typed */
    flock_addr client;  /* the browser's address */
    flock_str origin;   /* the websocket's Origin header; {NULL, 0} when none */
} flock_login;

typedef struct flock_persona {
    flock_str id;
    flock_str name;
} flock_persona;

/* filter_personas: an appliance's persona list, before a browser sees it. */
typedef struct flock_persona_query {
    uint32_t struct_size;
    flock_str appliance;
    flock_addr client;
    const flock_persona *personas;
    size_t count;
} flock_persona_query;

/* audit: something happened. Fields that do not apply to kind are empty ({NULL, 0},
 * family 0, zero fingerprint). */
typedef struct flock_audit_event {
    uint32_t struct_size;
    uint32_t kind;           /* FLOCK_AUDIT_* */
    flock_str name;          /* the appliance name */
    flock_addr addr;         /* appliance address (new one if changed); log-ins: client's */
    flock_addr old_addr;     /* ADDRESS_CHANGED: the previous address */
    uint8_t fingerprint[32]; /* REGISTERED, EXPIRED, ADDRESS_CHANGED */
    flock_str persona;       /* LOGIN_*: persona id */
    flock_str reason;        /* LOGIN_FAILED: e.g. "bad-credentials", "denied" */
} flock_audit_event;

/* Host callbacks. The host copies what it needs during the call. */
typedef void (*flock_error_fn)(void *ctx, flock_str message);
typedef void (*flock_keep_fn)(void *ctx, size_t index);

typedef struct flock_plugin_table {
    uint32_t abi_version; /* FLOCK_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(flock_plugin_table) */
    const char *name;     /* static, NUL-terminated; NULL: the file name is used */

    /* Once, at start, before any hook. config is the plugin's settings string from flockd's
     * config (the host also puts a NUL after config.len bytes). Store your state in
     * *state_out: every hook receives it. Non-zero refuses the start: call
     * error(error_ctx, message) first to say why. NULL: no settings, state NULL. */
    int32_t (*init)(flock_str config, void **state_out, flock_error_fn error, void *error_ctx);

    /* The hooks; NULL means no opinion (allow, keep every persona, ignore the event). */

    /* FLOCK_ALLOW or FLOCK_DENY. */
    int32_t (*admit_registration)(void *state, const flock_registration *r);

    /* FLOCK_ALLOW, FLOCK_DENY, or FLOCK_RETRY_AFTER with *retry_after_ms set. */
    int32_t (*authorize_login)(void *state, const flock_login *l, uint32_t *retry_after_ms);

    /* Call keep(keep_ctx, i) for each persona the browser may see, then return FLOCK_ALLOW.
     * Any other result shows the browser no persona at all. */
    int32_t (*filter_personas)(void *state, const flock_persona_query *q, flock_keep_fn keep,
                               void *keep_ctx);

    /* No result. Runs on one audit thread, in order; keep it short (events are dropped when
     * the host's audit queue is full). */
    void (*audit)(void *state, const flock_audit_event *e);
} flock_plugin_table;

/* The one symbol a plugin exports. */
FLOCK_PLUGIN_EXPORT const flock_plugin_table *flock_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* FLOCK_PLUGIN_H */
