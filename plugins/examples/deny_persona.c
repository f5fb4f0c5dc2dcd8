/*
 * deny_persona: an example Flock plugin in C. Config: a persona id. Log-ins as that persona
 * are denied, and the persona is hidden from the lists browsers see.
 *
 *   cc -shared -fPIC -O2 -I plugins/include -o libdeny_persona.so plugins/examples/deny_persona.c
 */
#include "flock_plugin.h"

#include <stdlib.h>
#include <string.h>

struct state {
    size_t len;
    char id[]; /* the persona id, not NUL-terminated */
};

static int same(const struct state *s, flock_str str) {
    return str.len == s->len && memcmp(str.ptr, s->id, s->len) == 0;
}

static int32_t init(flock_str config, void **state_out, flock_error_fn error, void *error_ctx) {
    if (config.len == 0) {
        static const char msg[] = "config must be the persona id to deny";
        error(error_ctx, (flock_str){(const uint8_t *)msg, sizeof msg - 1});
        return FLOCK_ERROR;
    }
    /* Copied: config is only borrowed. Never freed: plugins live as long as the process. */
    struct state *s = malloc(sizeof *s + config.len);
    if (s == NULL) return FLOCK_ERROR;
    s->len = config.len;
    memcpy(s->id, config.ptr, config.len);
    *state_out = s;
    return 0;
}

/* Read-only state: thread-safe without locks. */
static int32_t authorize_login(void *state, const flock_login *l, uint32_t *retry_after_ms) {
    (void)retry_after_ms;
    return same(state, l->persona) ? FLOCK_DENY : FLOCK_ALLOW;
}

static int32_t filter_personas(void *state, const flock_persona_query *q, flock_keep_fn keep,
                               void *keep_ctx) {
    for (size_t i = 0; i < q->count; i++) {
        if (!same(state, q->personas[i].id)) keep(keep_ctx, i);
    }
    return FLOCK_ALLOW;
}

static const flock_plugin_table table = {
    .abi_version = FLOCK_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(flock_plugin_table),
    .name = "deny-persona",
    .init = init,
    .authorize_login = authorize_login,
    .filter_personas = filter_personas,
};

FLOCK_PLUGIN_EXPORT const flock_plugin_table *flock_plugin_v1(void) { return &table; }
