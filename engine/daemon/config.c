/*
 * certflowd's configuration: one INI file read with inih, over defaults that make a fresh
 * checkout run with no file at all (everything under ./var/, listeners on 127.0.0.1 only).
 * Every key is listed in one table with its section, type and default, so that an unknown
 * section or key, or a value of the wrong type, is reported with its file and line; all problems
 * of a file are reported at once, not only the first. What the table cannot check alone (plain
 * HTTP off loopback, a TLS key without a certificate) is checked after the file was read, and
 * reported at the line (or variable) that set the offending value.
 *
 * Environment overrides: after the file, every setting may be replaced by the environment
 * variable CERTFLOW_<SECTION>_<KEY>, made of "CERTFLOW_", the section, "_" and the key, upper-
 * case, with every character other than A-Z and 0-9 replaced by '_' (so [daemon] data_dir is
 * CERTFLOW_DAEMON_DATA_DIR and [mtls] port is CERTFLOW_MTLS_PORT). A variable that is set wins
 * over the file even when it is empty, exactly as `key =` in the file sets an empty value; spaces
 * around the value are dropped, as inih drops them in the file. Its value goes through the same
 * checks as the file's, and a problem names the variable ("environment variable NAME: ...") and
 * never the value of a secret key. A CERTFLOW_* variable that is no setting gets a warning, not
 * an error (other tools may use the prefix); the variables certflow's programs read themselves
 * (other_env below) are known and get none.
 *
 * Where each value came from (default, FILE:LINE, environment, derived) is kept per setting for
 * --print-config, which masks secret values. Using the configuration is left to certflowd.c.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "ca/embedded.h"
#include "daemon/daemon.h"

enum key_type { K_STRING, K_INT, K_BOOL };

struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    const char *def; /* default as text; NULL for a string derived later */
    int min, max;    /* K_INT */
    unsigned flags;  /* F_SECRET */
};

/* The value is never printed (--print-config masks it) nor quoted in a message. None of today's
 * keys is a secret; the flag is there so that the first one cannot leak. */
#define F_SECRET 1u

#define OFF(field) offsetof(struct cf_daemon_config, field)

static const struct key_def keys[] = {
    {"daemon", "data_dir", K_STRING, OFF(data_dir), "var", 0, 0, 0},
    {"daemon", "database", K_STRING, OFF(database), NULL, 0, 0, 0},
    {"daemon", "plugin_dir", K_STRING, OFF(plugin_dir), NULL, 0, 0, 0},
    {"daemon", "node_id", K_STRING, OFF(node_id), "", 0, 0, 0},
    {"daemon", "shutdown_timeout", K_INT, OFF(shutdown_timeout_s), "30", 0, 3600, 0},
    {"daemon", "max_concurrent_jobs", K_INT, OFF(max_concurrent_jobs), "32", 1, 4096, 0},
    {"daemon", "log_level", K_STRING, OFF(log_level), "info", 0, 0, 0},
    {"processes", "dir", K_STRING, OFF(processes_dir), NULL, 0, 0, 0},
    {"processes", "seed", K_STRING, OFF(seed_dir), "processes", 0, 0, 0},
    {"processes", "tenant", K_STRING, OFF(deploy_tenant), NULL, 0, 0, 0},
    {"processes", "debounce_ms", K_INT, OFF(debounce_ms), "300", 10, 60000, 0},
    {"processes", "settle_ms", K_INT, OFF(settle_ms), "1000", 0, 600000, 0},
    {"tls", "cert", K_STRING, OFF(tls_cert), "", 0, 0, 0},
    {"tls", "key", K_STRING, OFF(tls_key), "", 0, 0, 0},
    {"tls", "truststore", K_STRING, OFF(truststore), "", 0, 0, 0},
    {"tls", "crl", K_STRING, OFF(crl), "", 0, 0, 0},
    {"mtls", "enabled", K_BOOL, OFF(mtls.enabled), "true", 0, 0, 0},
    {"mtls", "host", K_STRING, OFF(mtls.host), "127.0.0.1", 0, 0, 0},
    {"mtls", "port", K_INT, OFF(mtls.port), "8443", 0, 65535, 0},
    {"basic", "enabled", K_BOOL, OFF(basic.enabled), "true", 0, 0, 0},
    {"basic", "host", K_STRING, OFF(basic.host), "127.0.0.1", 0, 0, 0},
    {"basic", "port", K_INT, OFF(basic.port), "8444", 0, 65535, 0},
    {"http", "enabled", K_BOOL, OFF(http.enabled), "true", 0, 0, 0},
    {"http", "host", K_STRING, OFF(http.host), "127.0.0.1", 0, 0, 0},
    {"http", "port", K_INT, OFF(http.port), "8080", 0, 65535, 0},
    {"auth", "failure_limit", K_INT, OFF(auth_failure_limit), "10", 1, 1000000, 0},
    {"auth", "failure_window", K_INT, OFF(auth_failure_window_s), "60", 1, 86400, 0},
    {"auth", "cache_ttl", K_INT, OFF(auth_cache_ttl_s), "60", 1, 3600, 0},
    {"auth", "cache", K_BOOL, OFF(auth_cache), "true", 0, 0, 0},
    {"limits", "max_connections", K_INT, OFF(max_connections), "1024", 1, 1000000, 0},
    {"limits", "header_timeout", K_INT, OFF(header_timeout_s), "10", 1, 3600, 0},
    {"limits", "body_timeout", K_INT, OFF(body_timeout_s), "30", 1, 3600, 0},
    {"limits", "idle_timeout", K_INT, OFF(idle_timeout_s), "60", 1, 86400, 0},
    {"bootstrap", "enabled", K_BOOL, OFF(bootstrap), "true", 0, 0, 0},
    {"bootstrap", "admin_user", K_STRING, OFF(admin_user), "admin", 0, 0, 0},
    {"bootstrap", "tenant", K_STRING, OFF(bootstrap_tenant), "default", 0, 0, 0},
    {"bootstrap", "template", K_STRING, OFF(bootstrap_template), "default", 0, 0, 0},
    {"metrics", "public", K_BOOL, OFF(metrics_public), "false", 0, 0, 0},
};

/* CERTFLOW_* variables that certflow's programs read themselves: no setting, and no warning. */
struct other_env {
    const char *name;
    bool secret;
    bool certflowd; /* read by certflowd (shown by --print-config), not only by the CLI */
    const char *what;
};

static const struct other_env other_env[] = {
    {"CERTFLOW_PLUGINS", false, true, "the plug-in folder when [daemon] plugin_dir is empty"},
    {CF_CA_PASSPHRASE_ENV, true, true,
     "the passphrase of the embedded CA's keys, unless the systemd "
     "credential " CF_CA_CREDENTIAL_NAME " is given"},
    {"CERTFLOW_CRASH_AT", false, true, "crash testing only: makes the engine exit at a point"},
    {"CERTFLOW_URL", false, false, "the certflow command's daemon address"},
    {"CERTFLOW_PASSWORD", true, false, "the certflow command's password"},
};

#define ENV_PREFIX "CERTFLOW_"
#define ENV_NAME_MAX 96
#define MASK "********"

enum origin_kind { O_DEFAULT, O_FILE, O_ENV, O_DERIVED };

struct cf_daemon_origin {
    enum origin_kind kind;
    int line;         /* O_FILE */
    const char *from; /* O_DERIVED: the setting it was derived from, "[section] key" */
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

void cf_daemon_config_env_name(const char *section, const char *key, char *out, size_t outlen)
{
    char name[ENV_NAME_MAX];
    snprintf(name, sizeof name, ENV_PREFIX "%s_%s", section, key);
    for (char *p = name + strlen(ENV_PREFIX); *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x80 && isalnum(ch))
            *p = (char)toupper(ch);
        else
            *p = '_';
    }
    cf_strlcpy(out, name, outlen);
}

static void key_env_name(const struct key_def *k, char out[ENV_NAME_MAX])
{
    cf_daemon_config_env_name(k->section, k->name, out, ENV_NAME_MAX);
}

static size_t key_index(const char *section, const char *name)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return i;
    /* Only called with names of this file's table. */
    abort();
}

/* A problem with the value of one setting, reported where that value came from: the file's line,
 * the environment variable, or the file (or "configuration") for a default. */
static void key_error(struct parse_state *ps, const char *section, const char *name,
                      const char *fmt, ...) CF_PRINTF(4, 5);

static void key_error(struct parse_state *ps, const char *section, const char *name,
                      const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t i = key_index(section, name);
    const struct cf_daemon_origin *o = &ps->c->origins[i];
    if (o->kind == O_ENV) {
        char env[ENV_NAME_MAX];
        key_env_name(&keys[i], env);
        cf_buf_printf(ps->errors, "environment variable %s: %s\n", env, msg);
        ps->n_errors++;
    } else {
        add_error(ps, o->kind == O_FILE ? o->line : 0, "%s", msg);
    }
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

/* Sets one key from its text; returns a message for the user, or NULL. The message quotes the
 * value unless the key is a secret. */
static const char *set_value(struct cf_daemon_config *c, const struct key_def *k, const char *v,
                             char *msg, size_t msglen)
{
    char *base = (char *)c;
    char quoted[300] = "";
    if (!(k->flags & F_SECRET))
        snprintf(quoted, sizeof quoted, ", not '%s'", v);
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
            snprintf(msg, msglen, "[%s] %s must be a whole number from %d to %d%s", k->section,
                     k->name, k->min, k->max, quoted);
            return msg;
        }
        *(int *)(base + k->offset) = (int)n;
        return NULL;
    }
    case K_BOOL:
        if (parse_bool(v, (bool *)(base + k->offset)) != 0) {
            snprintf(msg, msglen, "[%s] %s must be true or false%s", k->section, k->name, quoted);
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
        ps->c->origins[i] = (struct cf_daemon_origin){.kind = O_FILE, .line = ps->line};
        char msg[512];
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

/* The value of `name` in `envp`, or NULL; the first one wins, as with getenv(). */
static const char *env_lookup(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static const char *known_section(const char *upper, size_t len)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        char env[ENV_NAME_MAX];
        cf_daemon_config_env_name(keys[i].section, "", env, sizeof env);
        /* env is "CERTFLOW_SECTION_"; compare the section part with its underscore. */
        size_t sl = strlen(env) - strlen(ENV_PREFIX);
        if (sl <= len && memcmp(env + strlen(ENV_PREFIX), upper, sl) == 0)
            return keys[i].section;
    }
    return NULL;
}

/* Applies the CERTFLOW_<SECTION>_<KEY> variables, then warns about CERTFLOW_* variables that are
 * neither a setting nor one certflow's programs read. */
static void apply_env(struct parse_state *ps, char *const *envp, struct cf_buf *warnings)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        char env[ENV_NAME_MAX];
        key_env_name(&keys[i], env);
        const char *raw = env_lookup(envp, env);
        if (!raw)
            continue;
        ps->c->origins[i] = (struct cf_daemon_origin){.kind = O_ENV};
        /* Spaces around the value are dropped, as inih drops them around a file's value. */
        while (*raw && isspace((unsigned char)*raw))
            raw++;
        char *v = cf_xstrdup(raw);
        size_t n = strlen(v);
        while (n && isspace((unsigned char)v[n - 1]))
            v[--n] = '\0';
        if (strpbrk(v, "\r\n")) {
            key_error(ps, keys[i].section, keys[i].name,
                      "[%s] %s must be one line (a file's value cannot hold a line break either)",
                      keys[i].section, keys[i].name);
        } else {
            char msg[512];
            const char *bad = set_value(ps->c, &keys[i], v, msg, sizeof msg);
            if (bad)
                key_error(ps, keys[i].section, keys[i].name, "%s", bad);
        }
        free(v);
    }
    for (char *const *e = envp; e && *e; e++) {
        if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[ENV_NAME_MAX];
        if (n >= sizeof name) {
            if (warnings)
                cf_buf_printf(warnings,
                              "environment variable %.40s... is not a certflowd setting; "
                              "ignored\n",
                              *e);
            continue;
        }
        memcpy(name, *e, n);
        name[n] = '\0';
        bool known = false;
        for (size_t i = 0; i < CF_ARRAY_LEN(keys) && !known; i++) {
            char env[ENV_NAME_MAX];
            key_env_name(&keys[i], env);
            known = strcmp(env, name) == 0;
        }
        for (size_t i = 0; i < CF_ARRAY_LEN(other_env) && !known; i++)
            known = strcmp(other_env[i].name, name) == 0;
        if (known || !warnings)
            continue;
        const char *section = known_section(name + strlen(ENV_PREFIX), n - strlen(ENV_PREFIX));
        if (section)
            cf_buf_printf(warnings,
                          "environment variable %s is not a certflowd setting (no such key in "
                          "[%s]); ignored\n",
                          name, section);
        else
            cf_buf_printf(warnings,
                          "environment variable %s is not a certflowd setting (settings are "
                          "CERTFLOW_<SECTION>_<KEY>, see certflowd --print-config); ignored\n",
                          name);
    }
}

static void set_defaults(struct cf_daemon_config *c)
{
    memset(c, 0, sizeof *c);
    c->origins = cf_xcalloc(CF_ARRAY_LEN(keys), sizeof *c->origins);
    char msg[512];
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

/* Replaces an empty setting by a value derived from another one. */
static void derive(struct cf_daemon_config *c, const char *section, const char *name, char *value,
                   const char *from)
{
    size_t i = key_index(section, name);
    char **slot = (char **)((char *)c + keys[i].offset);
    free(*slot);
    *slot = value;
    c->origins[i] = (struct cf_daemon_origin){.kind = O_DERIVED, .from = from};
}

/* The table is the single source of names: two settings, or a setting and a variable certflow
 * reads for itself, must never share an environment name. */
static bool env_names_unique(void)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        char a[ENV_NAME_MAX];
        key_env_name(&keys[i], a);
        for (size_t j = i + 1; j < CF_ARRAY_LEN(keys); j++) {
            char b[ENV_NAME_MAX];
            key_env_name(&keys[j], b);
            if (strcmp(a, b) == 0)
                return false;
        }
        for (size_t j = 0; j < CF_ARRAY_LEN(other_env); j++)
            if (strcmp(a, other_env[j].name) == 0)
                return false;
    }
    return true;
}

int cf_daemon_config_load(struct cf_daemon_config *c, const char *path, char *const *envp,
                          struct cf_buf *errors, struct cf_buf *warnings)
{
    assert(env_names_unique());
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
    apply_env(&ps, envp, warnings);
    if (empty(c->data_dir))
        key_error(&ps, "daemon", "data_dir", "[daemon] data_dir must not be empty");
    else {
        if (empty(c->database))
            derive(c, "daemon", "database", join(c->data_dir, "certflow.db"), "[daemon] data_dir");
        if (empty(c->processes_dir))
            derive(c, "processes", "dir", join(c->data_dir, "processes"), "[daemon] data_dir");
    }
    /* Folder deployments go to the bootstrap tenant unless told otherwise, so that the first
     * admin sees them and pushes to that tenant can start them. */
    if (empty(c->deploy_tenant))
        derive(c, "processes", "tenant", cf_xstrdup(c->bootstrap_tenant ? c->bootstrap_tenant : ""),
               "[bootstrap] tenant");
    enum cf_log_level lvl;
    if (cf_log_parse_level(c->log_level, &lvl) != 0)
        key_error(&ps, "daemon", "log_level",
                  "[daemon] log_level must be debug, info, warn or error");
    if (c->http.enabled && !is_loopback(c->http.host))
        key_error(&ps, "http", "host",
                  "[http] host %s is not a loopback address; plain HTTP is offered on "
                  "127.0.0.1 or ::1 only (use the TLS listeners for other addresses)",
                  c->http.host);
    bool any_tls = c->mtls.enabled || c->basic.enabled;
    if (!empty(c->tls_cert) != !empty(c->tls_key))
        key_error(&ps, "tls", empty(c->tls_cert) ? "key" : "cert",
                  "[tls] cert and key are set together or not at all");
    if (!empty(c->tls_cert) && c->mtls.enabled && empty(c->truststore))
        key_error(&ps, "tls", "cert",
                  "[tls] truststore is required for the client-certificate listener "
                  "when cert is set");
    if (!empty(c->truststore) && empty(c->tls_cert))
        key_error(&ps, "tls", "truststore", "[tls] truststore is set without cert and key");
    c->tls_generated = any_tls && empty(c->tls_cert);
    if (empty(c->admin_user))
        key_error(&ps, "bootstrap", "admin_user", "[bootstrap] admin_user must not be empty");
    if (empty(c->bootstrap_tenant))
        key_error(&ps, "bootstrap", "tenant", "[bootstrap] tenant must not be empty");
    if (empty(c->bootstrap_template))
        key_error(&ps, "bootstrap", "template", "[bootstrap] template must not be empty");
    if (c->mtls.enabled && c->basic.enabled && c->mtls.port && c->mtls.port == c->basic.port &&
        strcmp(c->mtls.host, c->basic.host) == 0)
        key_error(&ps, "basic", "port", "[mtls] and [basic] use the same port %d", c->mtls.port);
    return ps.n_errors ? CF_EINVAL : 0;
}

static void print_origin(const struct cf_daemon_config *c, size_t i, char *out, size_t outlen)
{
    const struct cf_daemon_origin *o = c->origins ? &c->origins[i] : NULL;
    char env[ENV_NAME_MAX];
    switch (o ? o->kind : O_DEFAULT) {
    case O_FILE:
        snprintf(out, outlen, "%s:%d", c->source ? c->source : "?", o->line);
        return;
    case O_ENV:
        key_env_name(&keys[i], env);
        snprintf(out, outlen, "env %s", env);
        return;
    case O_DERIVED:
        snprintf(out, outlen, "derived from %s", o->from);
        return;
    case O_DEFAULT:
        break;
    }
    if (c->tls_generated && strcmp(keys[i].section, "tls") == 0 && strcmp(keys[i].name, "crl") != 0)
        snprintf(out, outlen, "default (empty: the local PKI in %s/tls is used)",
                 c->data_dir ? c->data_dir : "?");
    else
        snprintf(out, outlen, "default");
}

void cf_daemon_config_print(const struct cf_daemon_config *c, char *const *envp, FILE *f)
{
    const char *section = "";
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        const struct key_def *k = &keys[i];
        if (strcmp(section, k->section) != 0) {
            fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        const char *base = (const char *)c;
        char value[1024];
        switch (k->type) {
        case K_STRING: {
            const char *v = *(char *const *)(base + k->offset);
            snprintf(value, sizeof value, "%s", empty(v) ? "" : (k->flags & F_SECRET) ? MASK : v);
            break;
        }
        case K_INT:
            snprintf(value, sizeof value, "%d", *(const int *)(base + k->offset));
            break;
        case K_BOOL:
            snprintf(value, sizeof value, "%s",
                     *(const bool *)(base + k->offset) ? "true" : "false");
            break;
        }
        char origin[600];
        print_origin(c, i, origin, sizeof origin);
        int n = fprintf(f, "%s = %s", k->name, value);
        fprintf(f, "%*s; %s\n", n < 40 ? 40 - n : 1, "", origin);
    }
    fprintf(f, "\n; environment variables outside the sections that certflowd reads:\n");
    for (size_t i = 0; i < CF_ARRAY_LEN(other_env); i++) {
        const struct other_env *o = &other_env[i];
        if (!o->certflowd)
            continue;
        const char *v = env_lookup(envp, o->name);
        if (!v)
            fprintf(f, "; %s is not set (%s)\n", o->name, o->what);
        else
            fprintf(f, "; %s = %s (%s)\n", o->name, o->secret && *v ? MASK : v, o->what);
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
    free(c->origins);
    memset(c, 0, sizeof *c);
}
