/*
 * certflowd: the daemon. It reads one INI file (or none: every setting has a default), makes a
 * local PKI and the first admin on a fresh data folder, opens the engine on a libuv loop, serves
 * the push endpoint, the Camunda REST subset, /api/v1, /health and /metrics on its listeners,
 * and deploys what is dropped into the processes folder.
 *
 * Shutdown (SIGTERM or SIGINT): stop accepting connections and stop watching the folder, let the
 * jobs that run finish and the answers waiting for a commit go out, up to
 * [daemon] shutdown_timeout, then commit what is pending, close and exit 0. Jobs still running at
 * the deadline are given up; their locks are released at the next start and they run again
 * (at-least-once, DESIGN.md §3). A second signal skips the wait.
 *
 * SIGHUP: the TLS listeners read their certificate chain, key, truststore and CRL files again,
 * for new connections; connections already open keep what they started with. When a file does
 * not load, nothing changes and an ERROR line names the file and why. The INI file and the
 * environment are not read again (other settings take a restart).
 *
 * Configuration: the file, then CERTFLOW_<SECTION>_<KEY> environment variables over it
 * (config.c); --print-config shows each effective value and where it came from.
 *
 * What it prints on stdout: where it listens, and a curl line to try a push; on first start also
 * the admin password, once. Everything else goes through cf_log on stderr.
 */
#define _XOPEN_SOURCE 700 /* realpath() */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "ca/service.h"
#include "daemon/daemon.h"
#include "net/http.h"

#define CF_VERSION "0.1.0"
#define DRAIN_POLL_MS 50

/* POSIX defines it; glibc declares it only for _GNU_SOURCE. */
extern char **environ;

static const char usage_text[] =
    "usage: certflowd [--config FILE] [--check-config | --print-config]\n"
    "\n"
    "  --config FILE    the INI file to read (default: ./certflow.ini when it exists, else the\n"
    "                   embedded defaults: data under ./var, listeners on 127.0.0.1)\n"
    "  --check-config   read and check the configuration, print the problems (FILE:LINE:\n"
    "                   message) or else every setting with its effective value, and exit\n"
    "  --print-config   the same: every setting's effective value and where it came from\n"
    "                   (default, FILE:LINE, env NAME, derived), secrets masked\n"
    "  --version        print the version\n"
    "\n"
    "Every setting may be overridden by the environment variable CERTFLOW_<SECTION>_<KEY>:\n"
    "upper-case, every character other than A-Z and 0-9 as '_' (CERTFLOW_MTLS_PORT=8443).\n"
    "SIGHUP reloads the TLS certificate, key, truststore and CRL for new connections.\n";

struct daemon {
    uv_loop_t loop;
    struct cf_daemon_config cfg;
    struct cf_engine *engine;
    struct cf_ca_svc *ca; /* the "ca" service: templates, embedded CA in <data_dir>/ca */
    struct cf_api *api;
    struct cf_http_server *server;
    struct cf_watch *watch;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain;
    char tls_files[1400]; /* what SIGHUP reloads, for its log line */
    bool stopping;
    bool closed;
    uint64_t deadline;
};

static void observer_incident(void *arg, int64_t instance_id, const char *activity_id,
                              const char *type, const char *message)
{
    struct daemon *d = arg;
    if (d->api)
        cf_api_push_incident(d->api, instance_id, activity_id, type, message);
}

static const char *default_plugin_dir(char *buf, size_t len)
{
    const char *env = getenv("CERTFLOW_PLUGINS");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    char joined[PATH_MAX + 16];
    snprintf(joined, sizeof joined, "%s/../plugins", exe);
    if (len < PATH_MAX || !realpath(joined, buf))
        return NULL;
    return buf;
}

static int mkdir_p(const char *path)
{
    char buf[1024];
    if (cf_strlcpy(buf, path, sizeof buf) != 0)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* ---- shutdown ------------------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish(struct daemon *d)
{
    if (d->closed)
        return;
    d->closed = true;
    uv_timer_stop(&d->drain);
    struct cf_engine_stats st;
    cf_engine_stats(d->engine, &st);
    if (st.running)
        cf_log(CF_LOG_WARN,
               "shutdown: %d job%s still running at the deadline; they run again at "
               "the next start",
               st.running, st.running == 1 ? "" : "s");
    /* Commit what is queued (answers waiting for their commit get them now). */
    cf_engine_flush(d->engine);
    if (d->server)
        cf_http_server_close(d->server);
    d->server = NULL;
    cf_engine_close(d->engine);
    cf_ca_service_detach(d->ca);
    d->ca = NULL;
    d->engine = NULL;
    cf_api_free(d->api);
    d->api = NULL;
    uv_close((uv_handle_t *)&d->sigterm, handle_closed);
    uv_close((uv_handle_t *)&d->sigint, handle_closed);
    uv_close((uv_handle_t *)&d->sighup, handle_closed);
    /* libuv restores the default action, which would end the process on a late SIGHUP. */
    signal(SIGHUP, SIG_IGN);
    uv_close((uv_handle_t *)&d->drain, handle_closed);
    cf_log(CF_LOG_INFO, "certflowd stopped");
}

static void drain_cb(uv_timer_t *t)
{
    struct daemon *d = cf_container_of(t, struct daemon, drain);
    struct cf_engine_stats st;
    cf_engine_stats(d->engine, &st);
    bool quiet = st.running == 0 && st.items == 0 && !cf_api_busy(d->api);
    if (quiet || cf_mono_ms() >= d->deadline)
        finish(d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    if (d->closed)
        return;
    if (d->stopping) {
        cf_log(CF_LOG_WARN, "shutdown: second signal, not waiting any longer");
        finish(d);
        return;
    }
    d->stopping = true;
    cf_log(CF_LOG_INFO, "shutdown: %s received; finishing running work (at most %d s)",
           signum == SIGTERM ? "SIGTERM" : "SIGINT", d->cfg.shutdown_timeout_s);
    if (d->server)
        cf_http_server_stop_accepting(d->server);
    cf_watch_close(d->watch);
    d->watch = NULL;
    d->deadline = cf_mono_ms() + (uint64_t)d->cfg.shutdown_timeout_s * 1000u;
    uv_timer_start(&d->drain, drain_cb, 0, DRAIN_POLL_MS);
}

/* SIGHUP: new TLS material for new connections, all listeners or none. */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    struct daemon *d = s->data;
    if (d->closed || d->stopping) {
        cf_log(CF_LOG_INFO, "SIGHUP: shutting down, nothing reloaded");
        return;
    }
    if (!d->server || !d->tls_files[0]) {
        cf_log(CF_LOG_INFO, "SIGHUP: no TLS listener, nothing to reload");
        return;
    }
    char err[1024];
    if (cf_http_server_reload_tls(d->server, err, sizeof err) != 0) {
        cf_log(CF_LOG_ERROR, "SIGHUP: TLS files not reloaded, the previous ones stay in use: %s",
               err);
        return;
    }
    cf_log(CF_LOG_INFO, "SIGHUP: TLS files reloaded for new connections %s", d->tls_files);
}

/* ---- start-up ------------------------------------------------------------------------------- */

static void print_ready(struct daemon *d, const struct cf_daemon_pki *pki, size_t n_listeners,
                        const struct cf_listener_config *ls)
{
    printf("certflowd %s ready (database %s, processes folder %s)\n", CF_VERSION, d->cfg.database,
           d->cfg.processes_dir);
    int mtls_port = 0;
    for (size_t i = 0; i < n_listeners; i++) {
        int port = cf_http_listener_port(d->server, i);
        const char *what = ls[i].kind == CF_LISTEN_TLS_CLIENT ? "client certificate"
                           : ls[i].kind == CF_LISTEN_TLS      ? "HTTP Basic"
                                                              : "HTTP Basic, loopback only";
        bool v6 = strchr(ls[i].host, ':') != NULL;
        printf("  listening on %s://%s%s%s:%d (%s)\n",
               ls[i].kind == CF_LISTEN_PLAIN ? "http" : "https", v6 ? "[" : "", ls[i].host,
               v6 ? "]" : "", port, what);
        if (ls[i].kind == CF_LISTEN_TLS_CLIENT)
            mtls_port = port;
    }
    if (pki && mtls_port) {
        printf("try a push:\n"
               "  curl --cacert %s --cert %s --key %s \\\n"
               "    -H 'Content-Type: application/pkix-cert' --data-binary @%s \\\n"
               "    'https://localhost:%d/ws/certificate/register/%s/%s?tenantId=%s'\n",
               pki->ca_cert, pki->admin_cert, pki->admin_key, pki->example_b64, mtls_port,
               d->cfg.bootstrap_template, CF_DAEMON_PUSH_PROCESS, d->cfg.bootstrap_tenant);
    }
    fflush(stdout);
}

static int run(struct daemon *d)
{
    char err[1024];
    struct cf_daemon_config *c = &d->cfg;
    if (mkdir_p(c->data_dir) != 0) {
        fprintf(stderr, "certflowd: cannot create %s: %s\n", c->data_dir, strerror(errno));
        return 1;
    }
    struct cf_daemon_pki pki;
    bool have_pki = false;
    if (c->tls_generated) {
        if (cf_daemon_pki_ensure(c->data_dir, &pki, err, sizeof err) != 0) {
            fprintf(stderr, "certflowd: %s\n", err);
            return 1;
        }
        have_pki = true;
        if (pki.created)
            cf_log(CF_LOG_INFO, "made a local CA and certificates in %s/tls", c->data_dir);
    }
    if (cf_watch_seed(c, err, sizeof err) != 0) {
        fprintf(stderr, "certflowd: %s\n", err);
        return 1;
    }

    char plugin_buf[PATH_MAX];
    const char *plugin_dir = c->plugin_dir && *c->plugin_dir
                                 ? c->plugin_dir
                                 : default_plugin_dir(plugin_buf, sizeof plugin_buf);
    if (uv_loop_init(&d->loop) != 0) {
        fprintf(stderr, "certflowd: cannot start the event loop\n");
        return 1;
    }
    struct cf_engine_options eo = {
        .db_path = c->database,
        .plugin_dir = plugin_dir,
        .node_id = c->node_id && *c->node_id ? c->node_id : NULL,
        .max_concurrent_jobs = c->max_concurrent_jobs,
    };
    int rc = cf_engine_open(&d->loop, &eo, &d->engine, err, sizeof err);
    if (rc) {
        fprintf(stderr, "certflowd: %s\n", err);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        uv_loop_close(&d->loop);
        return 1;
    }
    struct cf_engine_observer obs = {.incident = observer_incident, .arg = d};
    cf_engine_set_observer(d->engine, &obs);

    int exit_code = 1;
    char ca_dir[PATH_MAX];
    snprintf(ca_dir, sizeof ca_dir, "%s/ca", c->data_dir);
    if (cf_ca_service_attach(d->engine, ca_dir, &d->ca, err, sizeof err) != 0) {
        fprintf(stderr, "certflowd: %s\n", err);
        goto close_engine;
    }
    if (c->bootstrap) {
        bool created;
        rc = cf_daemon_bootstrap(cf_engine_store(d->engine), c, have_pki ? pki.admin_cert : NULL,
                                 &created, err, sizeof err);
        if (rc) {
            fprintf(stderr, "certflowd: %s\n", err);
            goto close_engine;
        }
    }

    struct cf_api_config ac = {
        .engine = d->engine,
        .data_dir = c->data_dir,
        .metrics_public = c->metrics_public,
        .loop = &d->loop,
        .auth_failure_limit = c->auth_failure_limit,
        .auth_failure_window_ms = (uint64_t)c->auth_failure_window_s * 1000u,
        .auth_cache_ttl_ms = (uint64_t)c->auth_cache_ttl_s * 1000u,
        .auth_cache_off = !c->auth_cache,
    };
    if (cf_api_new(&ac, &d->api, err, sizeof err) != 0) {
        fprintf(stderr, "certflowd: %s\n", err);
        goto close_engine;
    }
    cf_api_push_routes(d->api);
    cf_api_engine_rest_routes(d->api);
    cf_api_v1_routes(d->api);
    cf_api_health_routes(d->api);
    cf_api_cmrest_routes(d->api, d->ca);

    const char *cert = have_pki ? pki.server_cert : c->tls_cert;
    const char *key = have_pki ? pki.server_key : c->tls_key;
    const char *trust = have_pki ? pki.ca_cert : c->truststore;
    struct cf_listener_config ls[3];
    size_t n = 0;
    if (c->mtls.enabled)
        ls[n++] = (struct cf_listener_config){CF_LISTEN_TLS_CLIENT,
                                              c->mtls.host,
                                              c->mtls.port,
                                              cert,
                                              key,
                                              trust,
                                              c->crl && *c->crl ? c->crl : NULL};
    if (c->basic.enabled)
        ls[n++] = (struct cf_listener_config){CF_LISTEN_TLS, c->basic.host, c->basic.port, cert,
                                              key,           NULL,          NULL};
    if (c->http.enabled)
        ls[n++] = (struct cf_listener_config){
            CF_LISTEN_PLAIN, c->http.host, c->http.port, NULL, NULL, NULL, NULL};
    struct cf_http_server_config sc = {
        .listeners = ls,
        .n_listeners = n,
        .limits =
            {
                .header_timeout_ms = (uint64_t)c->header_timeout_s * 1000u,
                .body_timeout_ms = (uint64_t)c->body_timeout_s * 1000u,
                .idle_timeout_ms = (uint64_t)c->idle_timeout_s * 1000u,
                .max_connections = c->max_connections,
            },
        .handler = cf_api_handle,
        .body_limit = cf_api_body_limit,
        .arg = d->api,
    };
    if (n && cf_http_server_start(&d->loop, &sc, &d->server, err, sizeof err) != 0) {
        fprintf(stderr, "certflowd: %s\n", err);
        d->server = NULL;
        goto free_api;
    }
    cf_api_set_server(d->api, d->server);
    if (c->mtls.enabled || c->basic.enabled) {
        bool crl = c->mtls.enabled && c->crl && *c->crl;
        /* Only a log line: very long paths may cut it short. */
        int w = snprintf(d->tls_files, sizeof d->tls_files, "cert=%s key=%s%s%s%s%s", cert, key,
                         c->mtls.enabled ? " truststore=" : "", c->mtls.enabled ? trust : "",
                         crl ? " crl=" : "", crl ? c->crl : "");
        (void)w;
    }

    if (cf_watch_start(&d->loop, d->engine, c, &d->watch, err, sizeof err) != 0) {
        fprintf(stderr, "certflowd: %s\n", err);
        goto close_server;
    }

    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    uv_timer_init(&d->loop, &d->drain);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sighup, on_sighup, SIGHUP);

    print_ready(d, have_pki ? &pki : NULL, n, ls);
    cf_log(CF_LOG_INFO, "certflowd started listeners=%zu", n);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&d->loop);
    if (rc)
        cf_log(CF_LOG_WARN, "shutdown: event loop still had handles: %s", uv_strerror(rc));
    return 0;

close_server:
    if (d->server)
        cf_http_server_close(d->server);
free_api:
    cf_api_free(d->api);
close_engine:
    cf_engine_close(d->engine);
    cf_ca_service_detach(d->ca);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    return exit_code;
}

/* The configuration's warnings, one per line: through the logger, or plain on stderr. */
static void print_warnings(const char *text, bool log)
{
    for (const char *line = text; line && *line;) {
        int n = (int)strcspn(line, "\n");
        if (log)
            cf_log(CF_LOG_WARN, "config: %.*s", n, line);
        else
            fprintf(stderr, "certflowd: warning: %.*s\n", n, line);
        line += n + (line[n] == '\n');
    }
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    bool check_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0 ||
                   strcmp(argv[i], "--print-config") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("certflowd %s\n", CF_VERSION);
            return 0;
        } else {
            fprintf(stderr, "certflowd: unknown argument %s\n%s", argv[i], usage_text);
            return 2;
        }
    }
    if (!config && access("certflow.ini", F_OK) == 0)
        config = "certflow.ini";

    struct daemon *d = cf_xcalloc(1, sizeof *d);
    struct cf_buf errors;
    cf_buf_init(&errors);
    struct cf_buf warnings;
    cf_buf_init(&warnings);
    int rc = cf_daemon_config_load(&d->cfg, config, environ, &errors, &warnings);
    if (rc || check_only) {
        /* Without a daemon to run, warnings are plain lines before the problems. */
        print_warnings(warnings.data, false);
    }
    if (rc) {
        fputs(errors.data, stderr);
        cf_buf_free(&errors);
        cf_buf_free(&warnings);
        cf_daemon_config_free(&d->cfg);
        free(d);
        return 2;
    }
    cf_buf_free(&errors);
    if (check_only) {
        cf_buf_free(&warnings);
        printf("; certflowd: configuration %s is valid; the effective settings:\n",
               config ? config : "(embedded defaults)");
        cf_daemon_config_print(&d->cfg, environ, stdout);
        cf_daemon_config_free(&d->cfg);
        free(d);
        return 0;
    }
    enum cf_log_level level = CF_LOG_INFO;
    cf_log_parse_level(d->cfg.log_level, &level);
    cf_log_set_level(level);
    print_warnings(warnings.data, true);
    cf_buf_free(&warnings);
    /* The default action of SIGHUP ends a process; until the loop handles it, ignore it. */
    signal(SIGHUP, SIG_IGN);
    /* libuv writes to sockets with write(2): a peer that went away must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    /* Keys and passwords pass through this process's memory: no core files. */
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    /* Nor may other processes of the same user read that memory (ptrace, /proc/PID/mem). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    rc = run(d);
    cf_daemon_config_free(&d->cfg);
    free(d);
    return rc;
}
