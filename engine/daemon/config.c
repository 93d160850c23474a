/*
 * certflowd's configuration: one INI file read with inih, over defaults that make a fresh
 * checkout run with no file at all (everything under ./var/, listeners on 127.0.0.1 only).
 * Every key is listed in one table with its section, type and default, so that an unknown
 * section or key, or a value of the wrong type, is reported with its file and line; all problems
 * of a file are reported at once, not only the first. What the table cannot check alone (plain
 * HTTP off loopback, a TLS key without a certificate) is checked after the file was read.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "daemon/daemon.h"

enum key_type { K_STRING, K_INT, K_BOOL };

struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    const char *def; /* default as text; NULL for a string derived later */
    int min, max;    /* K_INT */
};

#define OFF(field) offsetof(struct cf_daemon_config, field)

static const struct key_def keys[] = {
    {"daemon", "data_dir", K_STRING, OFF(data_dir), "var", 0, 0},
    {"daemon", "database", K_STRING, OFF(database), NULL, 0, 0},
    {"daemon", "plugin_dir", K_STRING, OFF(plugin_dir), NULL, 0, 0},
    {"daemon", "node_id", K_STRING, OFF(node_id), "", 0, 0},
    {"daemon", "shutdown_timeout", K_INT, OFF(shutdown_timeout_s), "30", 0, 3600},
    {"daemon", "max_concurrent_jobs", K_INT, OFF(max_concurrent_jobs), "32", 1, 4096},
    {"daemon", "log_level", K_STRING, OFF(log_level), "info", 0, 0},
    {"processes", "dir", K_STRING, OFF(processes_dir), NULL, 0, 0},
    {"processes", "seed", K_STRING, OFF(seed_dir), "processes", 0, 0},
    {"processes", "tenant", K_STRING, OFF(deploy_tenant), NULL, 0, 0},
    {"processes", "debounce_ms", K_INT, OFF(debounce_ms), "300", 10, 60000},
    {"processes", "settle_ms", K_INT, OFF(settle_ms), "1000", 0, 600000},
    {"tls", "cert", K_STRING, OFF(tls_cert), "", 0, 0},
    {"tls", "key", K_STRING, OFF(tls_key), "", 0, 0},
    {"tls", "truststore", K_STRING, OFF(truststore), "", 0, 0},
    {"tls", "crl", K_STRING, OFF(crl), "", 0, 0},
    {"mtls", "enabled", K_BOOL, OFF(mtls.enabled), "true", 0, 0},
    {"mtls", "host", K_STRING, OFF(mtls.host), "127.0.0.1", 0, 0},
    {"mtls", "port", K_INT, OFF(mtls.port), "8443", 0, 65535},
    {"basic", "enabled", K_BOOL, OFF(basic.enabled), "true", 0, 0},
    {"basic", "host", K_STRING, OFF(basic.host), "127.0.0.1", 0, 0},
    {"basic", "port", K_INT, OFF(basic.port), "8444", 0, 65535},
    {"http", "enabled", K_BOOL, OFF(http.enabled), "true", 0, 0},
    {"http", "host", K_STRING, OFF(http.host), "127.0.0.1", 0, 0},
    {"http", "port", K_INT, OFF(http.port), "8080", 0, 65535},
    {"auth", "failure_limit", K_INT, OFF(auth_failure_limit), "10", 1, 1000000},
    {"auth", "failure_window", K_INT, OFF(auth_failure_window_s), "60", 1, 86400},
    {"auth", "cache_ttl", K_INT, OFF(auth_cache_ttl_s), "60", 1, 3600},
    {"auth", "cache", K_BOOL, OFF(auth_cache), "true", 0, 0},
    {"limits", "max_connections", K_INT, OFF(max_connections), "1024", 1, 1000000},
    {"limits", "header_timeout", K_INT, OFF(header_timeout_s), "10", 1, 3600},
    {"limits", "body_timeout", K_INT, OFF(body_timeout_s), "30", 1, 3600},
    {"limits", "idle_timeout", K_INT, OFF(idle_timeout_s), "60", 1, 86400},
    {"bootstrap", "enabled", K_BOOL, OFF(bootstrap), "true", 0, 0},
    {"bootstrap", "admin_user", K_STRING, OFF(admin_user), "admin", 0, 0},
    {"bootstrap", "tenant", K_STRING, OFF(bootstrap_tenant), "default", 0, 0},
    {"bootstrap", "template", K_STRING, OFF(bootstrap_template), "default", 0, 0},
    {"metrics", "public", K_BOOL, OFF(metrics_public), "false", 0, 0},
};

struct parse_state {
    struct cf_daemon_config *c;
    const char *file;
    FILE *f;
    int line;
    struct cf_buf *errors;
    int n_errors;
    bool seen[CF_ARRAY_LEN(keys)];
};

static void add_error(struct parse_state *ps, int line, const char *fmt, ...) CF_PRINTF(3, 4);

static void add_error(struct parse_state *ps, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        cf_buf_printf(ps->errors, "%s:%d: %s\n", ps->file, line, msg);
    else
        cf_buf_printf(ps->errors, "%s: %s\n", ps->file ? ps->file : "configuration", msg);
    ps->n_errors++;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < CF_ARRAY_LEN(yes); i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return CF_EINVAL;
}

/* Sets one key from its text; returns a message for the user, or NULL. */
static const char *set_value(struct cf_daemon_config *c, const struct key_def *k, const char *v,
                             char *msg, size_t msglen)
{
    char *base = (char *)c;
    switch (k->type) {
    case K_STRING: {
        char **slot = (char **)(base + k->offset);
        free(*slot);
        *slot = cf_xstrdup(v);
        return NULL;
    }
    case K_INT: {
        int64_t n;
        if (cf_parse_i64(v, &n) != 0 || n < k->min || n > k->max) {
            snprintf(msg, msglen, "[%s] %s must be a whole number from %d to %d, not '%s'",
                     k->section, k->name, k->min, k->max, v);
            return msg;
        }
        *(int *)(base + k->offset) = (int)n;
        return NULL;
    }
    case K_BOOL:
        if (parse_bool(v, (bool *)(base + k->offset)) != 0) {
            snprintf(msg, msglen, "[%s] %s must be true or false, not '%s'", k->section, k->name,
                     v);
            return msg;
        }
        return NULL;
    }
    return NULL;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *ps = user;
    bool section_known = false;
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        if (strcmp(keys[i].section, section) != 0)
            continue;
        section_known = true;
        if (strcmp(keys[i].name, name) != 0)
            continue;
        if (ps->seen[i])
            add_error(ps, ps->line, "[%s] %s is set twice", section, name);
        ps->seen[i] = true;
        char msg[256];
        const char *bad = set_value(ps->c, &keys[i], value, msg, sizeof msg);
        if (bad)
            add_error(ps, ps->line, "%s", bad);
        return 1;
    }
    if (!section_known)
        add_error(ps, ps->line, "unknown section [%s] (key %s)", section, name);
    else
        add_error(ps, ps->line, "unknown key %s in section [%s]", name, section);
    /* Keep going: every problem of the file is reported at once. */
    return 1;
}

/* inih reads lines through this, so that the handler knows the current line number. */
static char *read_line(char *str, int num, void *stream)
{
    struct parse_state *ps = stream;
    char *r = fgets(str, num, ps->f);
    if (r)
        ps->line++;
    return r;
}

static void set_defaults(struct cf_daemon_config *c)
{
    memset(c, 0, sizeof *c);
    char msg[256];
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++)
        if (keys[i].def)
            set_value(c, &keys[i], keys[i].def, msg, sizeof msg);
}

static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    return cf_xasprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

static bool empty(const char *s)
{
    return !s || !*s;
}

int cf_daemon_config_load(struct cf_daemon_config *c, const char *path, struct cf_buf *errors)
{
    set_defaults(c);
    struct parse_state ps = {.c = c, .file = path, .errors = errors};
    if (path) {
        c->source = cf_xstrdup(path);
        ps.f = fopen(path, "r");
        if (!ps.f) {
            add_error(&ps, 0, "cannot open: %s", strerror(errno));
            return CF_EINVAL;
        }
        int rc = ini_parse_stream(read_line, &ps, on_key, &ps);
        fclose(ps.f);
        /* inih itself reports lines it cannot read as key = value or [section]. */
        if (rc > 0)
            add_error(&ps, rc, "not a [section], key = value or comment line");
        else if (rc < 0)
            add_error(&ps, 0, "cannot be read");
    }
    if (empty(c->data_dir))
        add_error(&ps, 0, "[daemon] data_dir must not be empty");
    else {
        if (empty(c->database)) {
            free(c->database);
            c->database = join(c->data_dir, "certflow.db");
        }
        if (empty(c->processes_dir)) {
            free(c->processes_dir);
            c->processes_dir = join(c->data_dir, "processes");
        }
    }
    /* Folder deployments go to the bootstrap tenant unless told otherwise, so that the first
     * admin sees them and pushes to that tenant can start them. */
    if (empty(c->deploy_tenant)) {
        free(c->deploy_tenant);
        c->deploy_tenant = cf_xstrdup(c->bootstrap_tenant ? c->bootstrap_tenant : "");
    }
    enum cf_log_level lvl;
    if (cf_log_parse_level(c->log_level, &lvl) != 0)
        add_error(&ps, 0, "[daemon] log_level must be debug, info, warn or error");
    if (c->http.enabled && !is_loopback(c->http.host))
        add_error(&ps, 0,
                  "[http] host %s is not a loopback address; plain HTTP is offered on "
                  "127.0.0.1 or ::1 only (use the TLS listeners for other addresses)",
                  c->http.host);
    bool any_tls = c->mtls.enabled || c->basic.enabled;
    if (!empty(c->tls_cert) != !empty(c->tls_key))
        add_error(&ps, 0, "[tls] cert and key are set together or not at all");
    if (!empty(c->tls_cert) && c->mtls.enabled && empty(c->truststore))
        add_error(&ps, 0,
                  "[tls] truststore is required for the client-certificate listener "
                  "when cert is set");
    if (!empty(c->truststore) && empty(c->tls_cert))
        add_error(&ps, 0, "[tls] truststore is set without cert and key");
    c->tls_generated = any_tls && empty(c->tls_cert);
    if (empty(c->admin_user) || empty(c->bootstrap_tenant) || empty(c->bootstrap_template))
        add_error(&ps, 0, "[bootstrap] admin_user, tenant and template must not be empty");
    if (c->mtls.enabled && c->basic.enabled && c->mtls.port && c->mtls.port == c->basic.port &&
        strcmp(c->mtls.host, c->basic.host) == 0)
        add_error(&ps, 0, "[mtls] and [basic] use the same port %d", c->mtls.port);
    return ps.n_errors ? CF_EINVAL : 0;
}

void cf_daemon_config_print(const struct cf_daemon_config *c, FILE *f)
{
    const char *section = "";
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        const struct key_def *k = &keys[i];
        if (strcmp(section, k->section) != 0) {
            fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        const char *base = (const char *)c;
        switch (k->type) {
        case K_STRING: {
            const char *v = *(char *const *)(base + k->offset);
            fprintf(f, "%s = %s\n", k->name, v ? v : "");
            break;
        }
        case K_INT:
            fprintf(f, "%s = %d\n", k->name, *(const int *)(base + k->offset));
            break;
        case K_BOOL:
            fprintf(f, "%s = %s\n", k->name, *(const bool *)(base + k->offset) ? "true" : "false");
            break;
        }
    }
}

void cf_daemon_config_free(struct cf_daemon_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++)
        if (keys[i].type == K_STRING)
            free(*(char **)((char *)c + keys[i].offset));
    free(c->source);
    memset(c, 0, sizeof *c);
}
