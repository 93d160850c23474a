/*
 * Internals of certflowd shared by its files: the configuration (config.c), the local PKI made on
 * first start (pki.c), the first-start accounts (bootstrap.c) and the processes folder watch
 * (watch.c). certflowd.c ties them to the engine, the router and the HTTP server.
 *
 * Ownership: the configuration owns its strings and the record of where each value came from
 * (cf_daemon_config_free). Paths in it are as written in the file or the environment, or derived
 * from data_dir; relative paths are relative to the working directory.
 */
#ifndef CF_DAEMON_H
#define CF_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "base/base.h"
#include "run/engine.h"

struct cf_daemon_listener {
    bool enabled;
    char *host;
    int port;
};

struct cf_daemon_origin; /* where each setting's value came from; config.c's */

struct cf_daemon_config {
    char *source;                     /* the file read, or NULL for the embedded defaults */
    struct cf_daemon_origin *origins; /* one per setting, for cf_daemon_config_print */
    /* [daemon] */
    char *data_dir;
    char *database;
    char *plugin_dir;
    char *node_id;
    int shutdown_timeout_s;
    int max_concurrent_jobs;
    char *log_level;
    /* [processes] */
    char *processes_dir;
    char *seed_dir;
    char *deploy_tenant;
    int debounce_ms;
    int settle_ms;
    /* [tls] */
    char *tls_cert;
    char *tls_key;
    char *truststore;
    char *crl;
    bool tls_generated; /* cert, key and truststore are the ones made under <data_dir>/tls */
    /* listeners */
    struct cf_daemon_listener mtls, basic, http;
    /* [auth] */
    int auth_failure_limit;
    int auth_failure_window_s;
    int auth_cache_ttl_s;
    bool auth_cache;
    /* [limits] */
    int max_connections;
    int header_timeout_s;
    int body_timeout_s;
    int idle_timeout_s;
    /* [bootstrap] */
    bool bootstrap;
    char *admin_user;
    char *bootstrap_tenant;
    char *bootstrap_template;
    /* [metrics] */
    bool metrics_public;
};

/* Loads `path` (NULL: the defaults only) over the defaults, then the CERTFLOW_<SECTION>_<KEY>
 * variables of `envp` (a NULL-terminated "NAME=value" array such as `environ`; NULL: none) over
 * both, then derives what depends on other settings. Every problem goes to `errors`, one per
 * line, as "FILE:LINE: message" or "environment variable NAME: message" (never the value of a
 * secret); CERTFLOW_* variables that are no setting go to `warnings` (may be NULL), one per line.
 * Returns 0 or CF_EINVAL. */
int cf_daemon_config_load(struct cf_daemon_config *c, const char *path, char *const *envp,
                          struct cf_buf *errors, struct cf_buf *warnings);
void cf_daemon_config_free(struct cf_daemon_config *c);
/* Every setting with its effective value and, as a comment, where the value came from (default,
 * FILE:LINE, env NAME, derived); secrets masked. Then the other CERTFLOW_* variables of `envp`
 * that certflowd reads, also masked where secret. For --print-config and --check-config; meant to
 * be read, not fed back (masked values). */
void cf_daemon_config_print(const struct cf_daemon_config *c, char *const *envp, FILE *f);
/* The environment variable that overrides [section] key: "CERTFLOW_" section "_" key, upper-case,
 * every character other than A-Z and 0-9 replaced by '_'. */
void cf_daemon_config_env_name(const char *section, const char *key, char *out, size_t outlen);

/* Files of the local PKI under <data_dir>/tls. */
struct cf_daemon_pki {
    char ca_cert[512];
    char ca_key[512];
    char server_cert[512]; /* server certificate followed by the CA certificate */
    char server_key[512];
    char admin_cert[512]; /* client certificate of the bootstrap admin */
    char admin_key[512];
    char example_pem[512]; /* a certificate to push, PEM */
    char example_b64[512]; /* the same, Base64 of the DER as a CA pushes it */
    bool created;          /* made now (first start) */
};
/* Makes whatever of the local PKI is missing, with OpenSSL's APIs. */
int cf_daemon_pki_ensure(const char *data_dir, struct cf_daemon_pki *out, char *err, size_t errlen);
/* The RFC 2253 issuer and subject of a PEM certificate file (new strings). */
int cf_daemon_cert_names(const char *pem_file, char **issuer, char **subject, char *err,
                         size_t errlen);

/* First start: the tenant, template and admin user when the database has no user yet.
 * `admin_cert` (may be NULL) is mapped to the admin. The generated password goes to stdout once
 * and to <data_dir>/admin-password (mode 0600). */
int cf_daemon_bootstrap(struct cf_store *s, const struct cf_daemon_config *c,
                        const char *admin_cert, bool *created, char *err, size_t errlen);

/* The processes folder watch. */
struct cf_watch;
int cf_watch_start(uv_loop_t *loop, struct cf_engine *e, const struct cf_daemon_config *c,
                   struct cf_watch **out, char *err, size_t errlen);
/* Stops watching; the watch is freed once its handles are closed (run the loop). */
void cf_watch_close(struct cf_watch *w);
/* Creates the folder and fills it from the seed folder and the bundled push process when it
 * does not exist yet. */
int cf_watch_seed(const struct cf_daemon_config *c, char *err, size_t errlen);

/* The key of the push process seeded into a new processes folder. */
#define CF_DAEMON_PUSH_PROCESS "certificate-registered"

#endif
