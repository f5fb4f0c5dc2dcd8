/*
 * Test plugins that are wrong on purpose, one per -D flag (see tests/load_errors.rs and
 * tests/chaining.rs). Without a flag: a valid plugin that allows everything.
 */
#include "flock_plugin.h"

#include <stddef.h>

static int32_t init(flock_str config, void **state_out, flock_error_fn error, void *error_ctx) {
    (void)config;
    *state_out = NULL;
#ifdef INIT_FAILS
    static const char msg[] = "no database at /nonexistent";
    error(error_ctx, (flock_str){(const uint8_t *)msg, sizeof msg - 1});
    return 3;
#else
    (void)error;
    (void)error_ctx;
    return 0;
#endif
}

#ifdef HOOK_ERRORS
/* An unknown positive code and negative codes: all errors, all deny. */
static int32_t admit(void *state, const flock_registration *r) {
    (void)state;
    (void)r;
    return 7;
}

static int32_t login(void *state, const flock_login *l, uint32_t *retry_after_ms) {
    (void)state;
    (void)l;
    (void)retry_after_ms;
    return -5;
}

static int32_t filter(void *state, const flock_persona_query *q, flock_keep_fn keep, void *ctx) {
    (void)state;
    keep(ctx, 0);
    keep(ctx, q->count + 10); /* out of range: ignored by the host */
    return FLOCK_ERROR;
}
#endif

static const flock_plugin_table table = {
#ifdef WRONG_ABI
    .abi_version = 2,
#else
    .abi_version = FLOCK_PLUGIN_ABI_VERSION,
#endif
#ifdef TOO_SMALL
    .struct_size = offsetof(flock_plugin_table, audit),
#else
    .struct_size = sizeof(flock_plugin_table),
#endif
    .name = "broken",
    .init = init,
#ifdef HOOK_ERRORS
    .admit_registration = admit,
    .authorize_login = login,
    .filter_personas = filter,
#endif
};

#ifdef NO_SYMBOL
FLOCK_PLUGIN_EXPORT const flock_plugin_table *flock_plugin_v0(void) { return &table; }
#elif defined(NULL_TABLE)
FLOCK_PLUGIN_EXPORT const flock_plugin_table *flock_plugin_v1(void) {
    return table.abi_version ? NULL : &table;
}
#else
FLOCK_PLUGIN_EXPORT const flock_plugin_table *flock_plugin_v1(void) { return &table; }
#endif
