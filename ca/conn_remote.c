/*
 * The connector kinds for remote CAs, "cmp" (RFC 4210/9483, e.g. Certificate Manager's or any CMP
 * server) and "cm-rest" (Certificate Manager's REST API), as far as this build has them: their
 * template settings are checked, and a request reaches out to the CA's address so that a CA that
 * cannot be reached is reported for what it is. Their protocol clients are not built yet, so a
 * request to a CA that does answer fails too, saying so; both outcomes are CaConnectionFailed,
 * which a process's retry policy and boundary event handle like any unreachable CA.
 *
 * Settings (JSON objects; unknown fields are refused so that a typo does not go unnoticed):
 *   cmp:     {"server": "host[:port][/path]" or "http(s)://host[:port][/path]" (port 80 or 443
 *             by default), "path": "/pkix/", "reference": "...", "secret": "...", "cert": "...",
 *             "key": "...", "trusted": "...", "timeoutMs": 10000}
 *   cm-rest: {"url": "https://host:8444/pgwy/api", "cert": "...", "key": "...",
 *             "keyPassword": "...", "trusted": "...", "timeoutMs": 10000}
 * Only the address and timeoutMs are used here; the other fields are what the protocol clients
 * will need (shared secret, officer certificate and key, trust anchors).
 *
 * Everything runs on the loop: name resolution on libuv's pool, the TCP connection and its
 * timeout as handles of the loop. The CSR is decoded and verified first, so that a request that
 * could not be made is CommonError whatever the CA's state, as with the embedded connector.
 */
#include "ca/connector.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS 600000

/* ---- settings ---- */

struct endpoint {
    char host[256];
    char port[8];
};

/* "host", "host:port", "[v6]:port", optionally after "http://" or "https://" and before a path. */
static int parse_endpoint(const char *field, const char *text, struct endpoint *ep, char *err,
                          size_t errlen)
{
    int port = 80;
    const char *p = text;
    if (strncmp(p, "https://", 8) == 0) {
        p += 8;
        port = 443;
    } else if (strncmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strstr(p, "://")) {
        cf_errf(err, errlen, "settings.%s: \"%s\" has a scheme other than http or https", field,
                text);
        return CF_EINVAL;
    }
    const char *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end) {
            cf_errf(err, errlen, "settings.%s: \"%s\" has an IPv6 address without its ']'", field,
                    text);
            return CF_EINVAL;
        }
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    size_t hn = (size_t)(host_end - host);
    if (hn == 0 || hn >= sizeof(ep->host)) {
        cf_errf(err, errlen, "settings.%s: \"%s\" has no host name, or one that is too long", field,
                text);
        return CF_EINVAL;
    }
    memcpy(ep->host, host, hn);
    ep->host[hn] = '\0';
    if (*p == ':') {
        p++;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65535 || (*end && *end != '/')) {
            cf_errf(err, errlen,
                    "settings.%s: \"%s\" has a port that is not a number from 1 to "
                    "65535",
                    field, text);
            return CF_EINVAL;
        }
        port = (int)v;
        p = end;
    }
    if (*p && *p != '/') {
        cf_errf(err, errlen, "settings.%s: \"%s\" is not host[:port][/path]", field, text);
        return CF_EINVAL;
    }
    snprintf(ep->port, sizeof(ep->port), "%d", port);
    return 0;
}

struct remote_kind {
    const char *name;
    const char *address_field; /* "server" or "url" */
    const char *const *fields; /* every field the kind accepts */
    const char *no_override;   /* why it cannot carry a modified request */
};

static const char *const cmp_fields[] = {"server", "path",    "reference", "secret", "cert",
                                         "key",    "trusted", "timeoutMs", NULL};
static const char *const cm_rest_fields[] = {"url",     "cert",      "key", "keyPassword",
                                             "trusted", "timeoutMs", NULL};

static const struct remote_kind rk_cmp = {
    "cmp", "server", cmp_fields,
    "the cmp connector sends the PKCS#10 request as it was signed (p10cr), so the certificate's "
    "subject and SANs cannot differ from the CSR's; use a template with the embedded connector "
    "for executeModifiedPKCS10RequestTask"};
static const struct remote_kind rk_cm_rest = {
    "cm-rest", "url", cm_rest_fields,
    "the cm-rest connector sends the PKCS#10 request to Certificate Manager as it was signed "
    "(POST /certificates/pkcs10), so the certificate's subject and SANs cannot differ from the "
    "CSR's; use a template with the embedded connector for executeModifiedPKCS10RequestTask"};

static int check_remote(const struct remote_kind *rk, const json_t *settings, struct endpoint *ep,
                        uint64_t *timeout_ms, char *err, size_t errlen)
{
    if (!json_is_object(settings)) {
        cf_errf(err, errlen, "settings: must be a JSON object");
        return CF_EINVAL;
    }
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)settings, name, v)
    {
        bool known = false;
        for (size_t i = 0; rk->fields[i]; i++)
            known = known || strcmp(rk->fields[i], name) == 0;
        if (!known) {
            cf_errf(err, errlen, "settings.%s: the %s connector has no such setting", name,
                    rk->name);
            return CF_EINVAL;
        }
        if (strcmp(name, "timeoutMs") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > MAX_TIMEOUT_MS) {
                cf_errf(err, errlen,
                        "settings.timeoutMs: must be a whole number of milliseconds "
                        "from 1 to %d",
                        MAX_TIMEOUT_MS);
                return CF_EINVAL;
            }
        } else if (!json_is_string(v)) {
            cf_errf(err, errlen, "settings.%s: must be a string", name);
            return CF_EINVAL;
        }
    }
    const json_t *addr = json_object_get(settings, rk->address_field);
    if (!addr) {
        cf_errf(err, errlen, "settings.%s: the %s connector needs the CA's address",
                rk->address_field, rk->name);
        return CF_EINVAL;
    }
    struct endpoint tmp;
    int rc =
        parse_endpoint(rk->address_field, json_string_value(addr), ep ? ep : &tmp, err, errlen);
    if (rc)
        return rc;
    if (timeout_ms) {
        const json_t *t = json_object_get(settings, "timeoutMs");
        *timeout_ms = t ? (uint64_t)json_integer_value(t) : DEFAULT_TIMEOUT_MS;
    }
    return 0;
}

static int check_cmp(const json_t *settings, char *err, size_t errlen)
{
    return check_remote(&rk_cmp, settings, NULL, NULL, err, errlen);
}

static int check_cm_rest(const json_t *settings, char *err, size_t errlen)
{
    return check_remote(&rk_cm_rest, settings, NULL, NULL, err, errlen);
}

static int no_override(const struct remote_kind *rk, char *why, size_t whylen)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", rk->no_override);
    return 0;
}

static int override_cmp(const json_t *settings, char *why, size_t whylen)
{
    (void)settings;
    return no_override(&rk_cmp, why, whylen);
}

static int override_cm_rest(const json_t *settings, char *why, size_t whylen)
{
    (void)settings;
    return no_override(&rk_cm_rest, why, whylen);
}

static int create_cmp(const struct cf_ca_connector_env *env, struct cf_ca_connector **out,
                      char *err, size_t errlen);
static int create_cm_rest(const struct cf_ca_connector_env *env, struct cf_ca_connector **out,
                          char *err, size_t errlen);

const struct cf_ca_connector_kind cf__ca_kind_cmp = {
    .name = "cmp",
    .available = false,
    .check_settings = check_cmp,
    .supports_override = override_cmp,
    .create = create_cmp,
};

const struct cf_ca_connector_kind cf__ca_kind_cm_rest = {
    .name = "cm-rest",
    .available = false,
    .check_settings = check_cm_rest,
    .supports_override = override_cm_rest,
    .create = create_cm_rest,
};

/* ---- requests ---- */

struct probe;

struct remote {
    struct cf_ca_connector pub;
    const struct remote_kind *rk;
    uv_loop_t *loop;
    struct probe *probes;
};

struct probe {
    struct remote *rc;
    struct probe *prev, *next;
    const struct cf_ca_conn_request *req;
    cf_ca_conn_done_fn done;
    void *arg;
    struct endpoint ep;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_timer_t timer;
    bool resolving;  /* gai is under way */
    bool connecting; /* conn is under way */
    bool tcp_open;
    int open_handles;
    bool finished; /* the outcome is decided; what remains is closing */
    enum cf_ca_status st;
    char msg[1024];
};

static void deliver_if_closed(struct probe *p)
{
    if (p->open_handles || p->resolving || p->connecting)
        return;
    struct remote *rc = p->rc;
    if (p->prev)
        p->prev->next = p->next;
    else
        rc->probes = p->next;
    if (p->next)
        p->next->prev = p->prev;
    struct cf_ca_conn_result res = {.status = p->st, .message = p->msg};
    p->done(p->arg, &res);
    free(p);
}

static void handle_closed(uv_handle_t *h)
{
    struct probe *p = h->data;
    p->open_handles--;
    deliver_if_closed(p);
}

static void finish(struct probe *p, enum cf_ca_status st, const char *fmt, ...) CF_PRINTF(3, 4);

/* Decides the outcome (the first decision wins) and closes what is open. */
static void finish(struct probe *p, enum cf_ca_status st, const char *fmt, ...)
{
    if (p->finished)
        return;
    p->finished = true;
    p->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
    va_end(ap);
    if (p->resolving)
        uv_cancel((uv_req_t *)&p->gai);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, handle_closed);
    /* Closing the socket also ends a connect under way (its callback gets UV_ECANCELED). */
    if (p->tcp_open && !uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, handle_closed);
    deliver_if_closed(p);
}

static const char *who(const struct probe *p, char *buf, size_t len)
{
    snprintf(buf, len, "the CA at %s:%s (%s connector of template '%s')", p->ep.host, p->ep.port,
             p->rc->rk->name, p->req->template_name ? p->req->template_name : "");
    return buf;
}

static void on_connect(uv_connect_t *c, int status)
{
    struct probe *p = c->data;
    p->connecting = false;
    if (p->finished) {
        /* Cut short by the timeout or a shutdown, which decided the outcome. */
        deliver_if_closed(p);
        return;
    }
    char w[512];
    if (status < 0)
        finish(p, CF_CA_CONNECTION_FAILED, "cannot connect to %s: %s", who(p, w, sizeof(w)),
               uv_strerror(status));
    else
        finish(p, CF_CA_CONNECTION_FAILED,
               "%s accepts connections, but this build of certflow has no %s client: the %s "
               "connector is not available yet; use a template with the embedded connector",
               who(p, w, sizeof(w)), p->rc->rk->name, p->rc->rk->name);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct probe *p = g->data;
    p->resolving = false;
    char w[512];
    if (p->finished) {
        uv_freeaddrinfo(res);
        deliver_if_closed(p);
        return;
    }
    if (status < 0) {
        finish(p, CF_CA_CONNECTION_FAILED, "cannot find %s: %s", who(p, w, sizeof(w)),
               uv_strerror(status));
        return;
    }
    int rc = uv_tcp_init(p->rc->loop, &p->tcp);
    if (!rc) {
        p->tcp.data = p;
        p->tcp_open = true;
        p->open_handles++;
        p->conn.data = p;
        rc = uv_tcp_connect(&p->conn, &p->tcp, res->ai_addr, on_connect);
        p->connecting = rc == 0;
    }
    uv_freeaddrinfo(res);
    if (rc)
        finish(p, CF_CA_CONNECTION_FAILED, "cannot connect to %s: %s", who(p, w, sizeof(w)),
               uv_strerror(rc));
}

static void on_timer(uv_timer_t *t)
{
    struct probe *p = t->data;
    char w[512];
    /* A timer that fires before anything started is the prompt delivery of a CSR error. */
    finish(p, CF_CA_CONNECTION_FAILED, "no connection to %s within %" PRIu64 " ms",
           who(p, w, sizeof(w)), uv_timer_get_repeat(t));
}

static int issue(struct cf_ca_connector *c, const struct cf_ca_conn_request *req,
                 cf_ca_conn_done_fn done, void *arg)
{
    struct remote *rc = cf_container_of(c, struct remote, pub);
    if (!req || !done)
        return CF_EINVAL;
    struct probe *p = cf_xcalloc(1, sizeof(*p));
    p->rc = rc;
    p->req = req;
    p->done = done;
    p->arg = arg;
    if (uv_timer_init(rc->loop, &p->timer) != 0) {
        free(p);
        return CF_EINVAL;
    }
    p->timer.data = p;
    p->gai.data = p;
    p->open_handles = 1;
    p->next = rc->probes;
    if (rc->probes)
        rc->probes->prev = p;
    rc->probes = p;

    uint64_t timeout_ms = DEFAULT_TIMEOUT_MS;
    struct cf_csr *csr = NULL;
    char err[512];
    if (cf_csr_decode(req->csr, req->csr_len, &csr, err, sizeof(err)) != 0 ||
        cf_csr_verify(csr, err, sizeof(err)) != 0) {
        p->finished = true;
        p->st = CF_CA_COMMON_ERROR;
        snprintf(p->msg, sizeof(p->msg), "%s", err);
    } else if (check_remote(rc->rk, req->settings, &p->ep, &timeout_ms, err, sizeof(err)) != 0) {
        p->finished = true;
        p->st = CF_CA_COMMON_ERROR;
        snprintf(p->msg, sizeof(p->msg), "certificate template '%s': %s", req->template_name, err);
    }
    cf_csr_free(csr);
    if (p->finished) {
        /* Delivered from the loop, never from inside issue(). */
        uv_close((uv_handle_t *)&p->timer, handle_closed);
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int r = uv_getaddrinfo(rc->loop, &p->gai, on_resolved, p->ep.host, p->ep.port, &hints);
    if (r) {
        char w[512];
        finish(p, CF_CA_CONNECTION_FAILED, "cannot find %s: %s", who(p, w, sizeof(w)),
               uv_strerror(r));
        return 0;
    }
    p->resolving = true;
    uv_timer_set_repeat(&p->timer, timeout_ms);
    uv_timer_start(&p->timer, on_timer, timeout_ms, 0);
    return 0;
}

static void shutdown_conn(struct cf_ca_connector *c)
{
    struct remote *rc = cf_container_of(c, struct remote, pub);
    struct probe *p = rc->probes;
    while (p) {
        struct probe *next = p->next;
        finish(p, CF_CA_CONNECTION_FAILED, "certflow stopped before the CA answered");
        p = next;
    }
}

static void free_conn(struct cf_ca_connector *c)
{
    if (c)
        free(cf_container_of(c, struct remote, pub));
}

static const struct cf_ca_connector_ops ops = {
    .issue = issue,
    .shutdown = shutdown_conn,
    .free = free_conn,
};

static int create_remote(const struct remote_kind *rk, const struct cf_ca_connector_kind *kind,
                         const struct cf_ca_connector_env *env, struct cf_ca_connector **out,
                         char *err, size_t errlen)
{
    if (!env || !env->loop) {
        cf_errf(err, errlen, "the %s connector needs a loop", rk->name);
        return CF_EINVAL;
    }
    struct remote *rc = cf_xcalloc(1, sizeof(*rc));
    rc->pub.ops = &ops;
    rc->pub.kind = kind;
    rc->rk = rk;
    rc->loop = env->loop;
    *out = &rc->pub;
    return 0;
}

static int create_cmp(const struct cf_ca_connector_env *env, struct cf_ca_connector **out,
                      char *err, size_t errlen)
{
    return create_remote(&rk_cmp, &cf__ca_kind_cmp, env, out, err, errlen);
}

static int create_cm_rest(const struct cf_ca_connector_env *env, struct cf_ca_connector **out,
                          char *err, size_t errlen)
{
    return create_remote(&rk_cm_rest, &cf__ca_kind_cm_rest, env, out, err, errlen);
}
