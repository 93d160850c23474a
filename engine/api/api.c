/*
 * The router of certflowd (see api.h): matches a request against the registered route tables,
 * authenticates it, loads the caller's tenants, checks the admin flag, and hands it to the route.
 * The routes themselves live in push.c, engine_rest.c, v1.c, health.c and cmrest.c (which
 * authenticates itself, through cf__api_cert_user(), to answer in Certificate Manager's format).
 *
 * Matching works on the raw request target split at '/', and each segment is percent-decoded on
 * its own, so that "%2F" inside a {capture} stays part of that capture instead of making a new
 * segment. When several patterns match, the one with a literal segment at the first place where
 * they differ wins ("/process-definition/key/{key}" beats "/process-definition/{id}/xml" for
 * "/process-definition/key/xml"). A path that matches only with another method answers 405 with
 * Allow.
 *
 * Authentication on the TLS_CLIENT listener maps the verified client certificate by (issuer DN,
 * subject DN) in RFC 2253 form. Elsewhere HTTP Basic is verified with argon2id on the libuv thread
 * pool, because one verification costs tens of milliseconds and 64 MiB by design and must not
 * stall the loop. An unknown user is verified against a dummy hash made with the same parameters,
 * so that it costs what a wrong password costs and answers the same 401.
 *
 * Failed logins are counted per client address and per user name in a fixed window; at the limit
 * the answer is 429 with Retry-After, decided before any hash is computed, which also keeps a
 * password-guessing client from tying up the thread pool.
 *
 * Credential cache: Basic clients such as a CA's distribution rule send the same credentials with
 * every push, and argon2id on each would cap pushes at a few dozen per second. A successful
 * verification is therefore remembered for a short time (auth_cache_ttl_ms, 60 s by default) as
 * BLAKE2b-256 keyed with a random per-process key over (user name, password, stored hash). The
 * password itself is never stored, the key never leaves this process, and because the stored hash
 * is part of the input a password change invalidates the entry at once. Only successes are
 * cached, so failures always cost a full verification.
 *
 * Never logged: the Authorization header, passwords, request and response bodies.
 */
#include "api/api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "api/router_internal.h"
#include "store/admin.h"

#define DEFAULT_FAILURE_LIMIT 10
#define DEFAULT_FAILURE_WINDOW_MS 60000u
#define DEFAULT_CACHE_TTL_MS 60000u
#define CACHE_SLOTS 256
#define RL_BUCKETS 1024
/* Beyond this many tracked keys, expired entries are swept; if that is not enough, new keys are
 * no longer tracked (and so not limited) rather than growing memory without bound. */
#define RL_MAX_ENTRIES 65536
#define MAX_SEGMENTS 32
#define MAX_USER_LEN 127
#define MAX_PASSWORD_LEN 1024

static const char WWW_AUTHENTICATE[] = "Basic realm=\"certflow\", charset=\"UTF-8\"";

struct route_entry {
    struct cf_route r;
    char *segs[MAX_SEGMENTS]; /* pattern segments; "{...}" for captures */
    size_t n_segs;
};

struct rl_entry {
    struct rl_entry *next;
    uint64_t window_start;
    uint32_t count;
    char key[];
};

struct ratelimit {
    struct rl_entry *buckets[RL_BUCKETS];
    size_t n;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    bool warned_full;
};

struct cache_slot {
    uint8_t digest[crypto_generichash_BYTES];
    int64_t user_id;
    uint64_t expires_mono;
};

struct cf_api {
    struct cf_engine *engine;
    struct cf_store *store;
    uv_loop_t *loop;
    char *data_dir;
    bool metrics_public;
    struct route_entry *routes;
    size_t n_routes;
    struct cf_http_server *server;
    struct cf__push *push;
    struct cf__cmrest *cmrest;

    int failure_limit;
    uint64_t failure_window_ms;
    uint64_t cache_ttl_ms;
    bool cache_off;
    struct ratelimit rl;
    uint8_t cache_key[crypto_generichash_KEYBYTES];
    struct cache_slot cache[CACHE_SLOTS];
    char dummy_hash[CF_PASSWORD_HASH_LEN];

    size_t pending_auth; /* password checks on the thread pool */
    bool freeing;        /* cf_api_free() was called while checks were pending */
};

/* ---- small helpers -------------------------------------------------------------------------- */

bool cf_principal_has_tenant(const struct cf_principal *p, const char *tenant_id)
{
    if (!p || !tenant_id)
        return false;
    for (size_t i = 0; i < p->n_tenants; i++)
        if (strcmp(p->tenants[i], tenant_id) == 0)
            return true;
    return false;
}

char *cf_api_dn_text(const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    char *out = NULL;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        if (n >= 0)
            out = cf_xstrndup(data, (size_t)n);
    }
    BIO_free(b);
    return out;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into a new string; NULL for a bad escape or a control character
 * (encoded or not), which no resource name needs and which could forge log lines. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = cf_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
                free(out);
                return NULL;
            }
            out[o++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
        int c = hi * 16 + lo;
        if (hi < 0 || lo < 0 || c < 0x20 || c == 0x7f) {
            free(out);
            return NULL;
        }
        out[o++] = (char)c;
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Splits a path into its segments (no empty segments; a trailing '/' is ignored). Returns the
 * count, or -1 for too many segments or a bad escape. Decoded segments are new strings. */
static int split_path(const char *path, size_t len, bool decode, char **segs, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && path[i] == '/')
            i++;
        if (i >= len)
            break;
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        if (n >= max)
            goto fail;
        segs[n] =
            decode ? pct_decode(path + start, i - start) : cf_xstrndup(path + start, i - start);
        if (!segs[n])
            goto fail;
        n++;
    }
    return (int)n;
fail:
    for (size_t k = 0; k < n; k++)
        free(segs[k]);
    return -1;
}

static void free_segs(char **segs, int n)
{
    for (int i = 0; i < n; i++)
        free(segs[i]);
}

static bool is_capture(const char *seg)
{
    size_t n = strlen(seg);
    return n >= 2 && seg[0] == '{' && seg[n - 1] == '}';
}

/* ---- JSON error bodies and answers ---------------------------------------------------------- */

static const char *default_type(int status)
{
    switch (status) {
    case 400:
        return "InvalidRequestException";
    case 401:
        return "AuthenticationException";
    case 403:
        return "AuthorizationException";
    case 404:
        return "NotFoundException";
    case 405:
        return "MethodNotAllowedException";
    case 409:
        return "ConflictException";
    case 413:
        return "PayloadTooLargeException";
    case 415:
        return "UnsupportedMediaTypeException";
    case 429:
        return "TooManyRequestsException";
    case 503:
        return "ServiceUnavailableException";
    default:
        return status >= 500 ? "ProcessEngineException" : "RestException";
    }
}

static json_t *error_body(int status, const char *type, const char *message)
{
    return json_pack("{s:s, s:s}", "type", type ? type : default_type(status), "message",
                     message ? message : "");
}

/* An error answer straight on the HTTP request (before a cf_api_request exists). */
static void http_error(struct cf_http_request *req, int status, const char *const *headers,
                       const char *message)
{
    json_t *body = error_body(status, NULL, message);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    cf_http_respond(req, status, "application/json", headers, text, text ? strlen(text) : 0);
    free(text);
}

static void principal_clear(struct cf_principal *p)
{
    cf_admin_strings_free(p->tenants, p->n_tenants);
    p->tenants = NULL;
    p->n_tenants = 0;
}

static void request_free(struct cf_api_request *r)
{
    principal_clear(&r->who);
    for (size_t i = 0; i < r->n_captures; i++)
        free((char *)r->captures[i]);
    free(r);
}

void cf_api_respond_json(struct cf_api_request *r, int status, json_t *body)
{
    cf_http_respond_json(r->http, status, body);
    request_free(r);
}

void cf_api_respond(struct cf_api_request *r, int status, const char *content_type,
                    const void *body, size_t len)
{
    cf_http_respond(r->http, status, content_type, NULL, body, len);
    request_free(r);
}

void cf__api_respond_headers(struct cf_api_request *r, int status, const char *content_type,
                             const char *const *headers, const void *body, size_t len)
{
    cf_http_respond(r->http, status, content_type, headers, body, len);
    request_free(r);
}

void cf__api_request_drop(struct cf_api_request *r)
{
    request_free(r);
}

static void respond_error_headers(struct cf_api_request *r, int status, const char *type,
                                  const char *const *headers, const char *message)
{
    json_t *body = error_body(status, type, message);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    cf_http_respond(r->http, status, "application/json", headers, text, text ? strlen(text) : 0);
    free(text);
    request_free(r);
}

void cf_api_error(struct cf_api_request *r, int status, const char *type, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *const *headers = NULL;
    const char *const busy[] = {"Retry-After", "1", NULL};
    if (status == 503)
        headers = busy;
    respond_error_headers(r, status, type, headers, msg);
}

void cf_api_no_content(struct cf_api_request *r)
{
    cf_http_respond(r->http, 204, NULL, NULL, NULL, 0);
    request_free(r);
}

/* ---- lifetime and registration -------------------------------------------------------------- */

int cf_api_new(const struct cf_api_config *cfg, struct cf_api **out, char *err, size_t errlen)
{
    if (!cfg || !cfg->engine) {
        cf_errf(err, errlen, "the API needs an engine");
        return CF_EINVAL;
    }
    if (sodium_init() < 0) {
        cf_errf(err, errlen, "libsodium cannot be initialised");
        return CF_EIO;
    }
    struct cf_api *api = cf_xcalloc(1, sizeof *api);
    api->engine = cfg->engine;
    api->store = cf_engine_store(cfg->engine);
    api->loop = cfg->loop ? cfg->loop : uv_default_loop();
    api->data_dir = cfg->data_dir ? cf_xstrdup(cfg->data_dir) : NULL;
    api->metrics_public = cfg->metrics_public;
    api->failure_limit =
        cfg->auth_failure_limit > 0 ? cfg->auth_failure_limit : DEFAULT_FAILURE_LIMIT;
    api->failure_window_ms =
        cfg->auth_failure_window_ms ? cfg->auth_failure_window_ms : DEFAULT_FAILURE_WINDOW_MS;
    api->cache_ttl_ms = cfg->auth_cache_ttl_ms ? cfg->auth_cache_ttl_ms : DEFAULT_CACHE_TTL_MS;
    api->cache_off = cfg->auth_cache_off;
    randombytes_buf(api->cache_key, sizeof api->cache_key);
    randombytes_buf(api->rl.hash_key, sizeof api->rl.hash_key);
    /* The dummy hash must cost exactly what a real one costs, so it is made the same way, from a
     * random password nobody knows. */
    uint8_t rnd[32];
    char pw[2 * sizeof rnd + 1];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(pw, sizeof pw, rnd, sizeof rnd);
    int rc = cf_admin_password_hash(pw, api->dummy_hash);
    sodium_memzero(pw, sizeof pw);
    if (rc) {
        cf_errf(err, errlen, "cannot compute a password hash: %s", cf_strerror(rc));
        free(api->data_dir);
        free(api);
        return rc;
    }
    *out = api;
    return 0;
}

static void rl_clear(struct ratelimit *rl)
{
    for (size_t b = 0; b < RL_BUCKETS; b++) {
        struct rl_entry *e = rl->buckets[b];
        while (e) {
            struct rl_entry *n = e->next;
            free(e);
            e = n;
        }
        rl->buckets[b] = NULL;
    }
    rl->n = 0;
}

static void api_destroy(struct cf_api *api)
{
    for (size_t i = 0; i < api->n_routes; i++)
        for (size_t k = 0; k < api->routes[i].n_segs; k++)
            free(api->routes[i].segs[k]);
    free(api->routes);
    rl_clear(&api->rl);
    sodium_memzero(api->cache, sizeof api->cache);
    sodium_memzero(api->cache_key, sizeof api->cache_key);
    cf__push_free(api->push);
    cf__cmrest_free(api->cmrest);
    free(api->data_dir);
    free(api);
}

void cf_api_free(struct cf_api *api)
{
    if (!api)
        return;
    /* A password check still on the thread pool comes back to this api; the last one frees it. */
    if (api->pending_auth) {
        api->freeing = true;
        return;
    }
    api_destroy(api);
}

void cf_api_register(struct cf_api *api, const struct cf_route *routes, size_t n)
{
    api->routes = cf_xrealloc(api->routes, (api->n_routes + n) * sizeof *api->routes);
    for (size_t i = 0; i < n; i++) {
        struct route_entry *e = &api->routes[api->n_routes];
        memset(e, 0, sizeof *e);
        e->r = routes[i];
        int k =
            split_path(routes[i].pattern, strlen(routes[i].pattern), false, e->segs, MAX_SEGMENTS);
        if (k < 0) {
            /* A pattern of our own that cannot be split is a bug in a route table. */
            cf_log(CF_LOG_ERROR, "api: route pattern %s is not usable", routes[i].pattern);
            abort();
        }
        e->n_segs = (size_t)k;
        api->n_routes++;
    }
}

struct cf_engine *cf_api_engine(struct cf_api *api)
{
    return api->engine;
}

struct cf_store *cf_api_store(struct cf_api *api)
{
    return api->store;
}

void cf_api_set_server(struct cf_api *api, struct cf_http_server *server)
{
    api->server = server;
}

struct cf_http_server *cf_api_server(struct cf_api *api)
{
    return api->server;
}

uv_loop_t *cf__api_loop(struct cf_api *api)
{
    return api->loop;
}

struct cf__push **cf__api_push_slot(struct cf_api *api)
{
    return &api->push;
}

const struct cf__push *cf__api_push_cslot(const struct cf_api *api)
{
    return api->push;
}

struct cf__cmrest **cf__api_cmrest_slot(struct cf_api *api)
{
    return &api->cmrest;
}

bool cf_api_busy(const struct cf_api *api)
{
    return api->pending_auth > 0 || cf__push_busy(api->push) || cf__cmrest_busy(api->cmrest);
}

/* ---- matching ------------------------------------------------------------------------------- */

/* Compares two matching routes by specificity: a literal where the other has a capture, at the
 * first place they differ, wins. */
static bool more_specific(const struct route_entry *a, const struct route_entry *b)
{
    for (size_t i = 0; i < a->n_segs && i < b->n_segs; i++) {
        bool ca = is_capture(a->segs[i]), cb = is_capture(b->segs[i]);
        if (ca != cb)
            return !ca;
    }
    return false;
}

static bool segs_match(const struct route_entry *e, char **segs, size_t n)
{
    if (e->n_segs != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_capture(e->segs[i]) && strcmp(e->segs[i], segs[i]) != 0)
            return false;
    return true;
}

/* Finds the route for decoded segments: *route for the method, or *path_matched when only another
 * method matches (with the methods in `allow`). */
static const struct route_entry *find_route(struct cf_api *api, const char *method, char **segs,
                                            size_t n, bool *path_matched, struct cf_buf *allow)
{
    const struct route_entry *best = NULL;
    *path_matched = false;
    for (size_t i = 0; i < api->n_routes; i++) {
        const struct route_entry *e = &api->routes[i];
        if (!segs_match(e, segs, n))
            continue;
        if (strcmp(e->r.method, method) != 0) {
            *path_matched = true;
            if (allow && !strstr(allow->len ? allow->data : "", e->r.method)) {
                if (allow->len)
                    cf_buf_puts(allow, ", ");
                cf_buf_puts(allow, e->r.method);
            }
            continue;
        }
        if (!best || more_specific(e, best))
            best = e;
    }
    return best;
}

size_t cf_api_body_limit(void *arg, const char *method, const char *path)
{
    struct cf_api *api = arg;
    char *segs[MAX_SEGMENTS];
    int n = split_path(path, strlen(path), false, segs, MAX_SEGMENTS);
    if (n < 0)
        return 0;
    bool other;
    const struct route_entry *e = find_route(api, method, segs, (size_t)n, &other, NULL);
    free_segs(segs, n);
    return e ? e->r.body_limit : 0;
}

/* ---- rate limiting of failed logins --------------------------------------------------------- */

static size_t rl_bucket(const struct ratelimit *rl, const char *key)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, strlen(key), rl->hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)(v % RL_BUCKETS);
}

static void rl_sweep(struct ratelimit *rl, uint64_t now, uint64_t window)
{
    for (size_t b = 0; b < RL_BUCKETS; b++) {
        struct rl_entry **pp = &rl->buckets[b];
        while (*pp) {
            struct rl_entry *e = *pp;
            if (now - e->window_start >= window) {
                *pp = e->next;
                free(e);
                rl->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static struct rl_entry *rl_find(struct ratelimit *rl, const char *key, uint64_t now,
                                uint64_t window)
{
    struct rl_entry **pp = &rl->buckets[rl_bucket(rl, key)];
    while (*pp) {
        struct rl_entry *e = *pp;
        if (now - e->window_start >= window) {
            *pp = e->next;
            free(e);
            rl->n--;
            continue;
        }
        if (strcmp(e->key, key) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

/* Seconds until `key` may try again, or 0 when it is not limited. */
static uint64_t rl_retry_after(struct cf_api *api, const char *key, uint64_t now)
{
    struct rl_entry *e = rl_find(&api->rl, key, now, api->failure_window_ms);
    if (!e || e->count < (uint32_t)api->failure_limit)
        return 0;
    uint64_t left = e->window_start + api->failure_window_ms - now;
    return (left + 999) / 1000;
}

static void rl_fail(struct cf_api *api, const char *key, uint64_t now)
{
    struct ratelimit *rl = &api->rl;
    struct rl_entry *e = rl_find(rl, key, now, api->failure_window_ms);
    if (e) {
        e->count++;
        return;
    }
    if (rl->n >= RL_MAX_ENTRIES) {
        rl_sweep(rl, now, api->failure_window_ms);
        if (rl->n >= RL_MAX_ENTRIES) {
            if (!rl->warned_full)
                cf_log(CF_LOG_WARN, "auth: too many addresses and names with failed logins to "
                                    "track; new ones are not rate limited until older ones expire");
            rl->warned_full = true;
            return;
        }
    }
    rl->warned_full = false;
    size_t len = strlen(key);
    e = cf_xmalloc(sizeof *e + len + 1);
    memcpy(e->key, key, len + 1);
    e->window_start = now;
    e->count = 1;
    size_t b = rl_bucket(rl, key);
    e->next = rl->buckets[b];
    rl->buckets[b] = e;
    rl->n++;
}

/* "ip:<address>" without the port, for "1.2.3.4:5678" and "[::1]:5678". */
static void ip_key(const char *peer, char *out, size_t outlen)
{
    const char *start = peer, *end = peer + strlen(peer);
    if (*start == '[') {
        const char *close = strchr(start, ']');
        if (close) {
            start++;
            end = close;
        }
    } else {
        const char *colon = strrchr(start, ':');
        if (colon && colon == strchr(start, ':'))
            end = colon;
    }
    snprintf(out, outlen, "ip:%.*s", (int)(end - start), start);
}

/* ---- principals ----------------------------------------------------------------------------- */

static int load_principal(struct cf_api *api, const struct cf_user_row *u, struct cf_principal *p)
{
    p->user_id = u->id;
    cf_strlcpy(p->name, u->name ? u->name : "", sizeof p->name);
    p->admin = u->admin;
    return cf_admin_user_tenants(api->store, u->id, &p->tenants, &p->n_tenants);
}

/* Runs the route once the caller is known. */
static void dispatch(struct cf_api_request *r, const struct route_entry *e)
{
    if ((e->r.flags & CF_ROUTE_ADMIN) && !r->who.admin) {
        cf_api_error(r, 403, NULL, "user %s is not an admin", r->who.name);
        return;
    }
    e->r.fn(r);
}

/* ---- HTTP Basic ----------------------------------------------------------------------------- */

struct basic_check {
    uv_work_t work;
    struct cf_api_request *r;
    const struct route_entry *route;
    char user[MAX_USER_LEN + 1];
    char ip[80];
    char *password;
    size_t password_len;
    char hash[CF_PASSWORD_HASH_LEN];
    bool known;
    int64_t user_id;
    uint8_t digest[crypto_generichash_BYTES];
    int result;
};

static void cache_digest(struct cf_api *api, const char *user, const char *password,
                         const char *hash, uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, api->cache_key, sizeof api->cache_key, crypto_generichash_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)user, strlen(user) + 1);
    crypto_generichash_update(&st, (const unsigned char *)password, strlen(password) + 1);
    crypto_generichash_update(&st, (const unsigned char *)hash, strlen(hash));
    crypto_generichash_final(&st, out, crypto_generichash_BYTES);
    sodium_memzero(&st, sizeof st);
}

static struct cache_slot *cache_slot_of(struct cf_api *api, const uint8_t *digest)
{
    return &api->cache[((size_t)digest[0] | (size_t)digest[1] << 8) % CACHE_SLOTS];
}

static bool cache_hit(struct cf_api *api, const uint8_t *digest, int64_t user_id)
{
    if (api->cache_off)
        return false;
    struct cache_slot *s = cache_slot_of(api, digest);
    return s->user_id == user_id && s->expires_mono > cf_mono_ms() &&
           sodium_memcmp(s->digest, digest, crypto_generichash_BYTES) == 0;
}

static void cache_put(struct cf_api *api, const uint8_t *digest, int64_t user_id)
{
    if (api->cache_off)
        return;
    struct cache_slot *s = cache_slot_of(api, digest);
    memcpy(s->digest, digest, crypto_generichash_BYTES);
    s->user_id = user_id;
    s->expires_mono = cf_mono_ms() + api->cache_ttl_ms;
}

static void respond_401(struct cf_api_request *r, const char *message)
{
    const char *const headers[] = {"WWW-Authenticate", WWW_AUTHENTICATE, NULL};
    respond_error_headers(r, 401, NULL, headers, message);
}

static void respond_429(struct cf_api_request *r, uint64_t retry_after_s)
{
    char secs[32];
    snprintf(secs, sizeof secs, "%" PRIu64, retry_after_s ? retry_after_s : 1);
    const char *const headers[] = {"Retry-After", secs, NULL};
    respond_error_headers(r, 429, NULL, headers,
                          "too many failed logins; try again after Retry-After seconds");
}

static void basic_work(uv_work_t *w)
{
    struct basic_check *c = cf_container_of(w, struct basic_check, work);
    c->result = cf_admin_password_verify(c->hash, c->password);
}

static void basic_check_free(struct basic_check *c)
{
    if (c->password) {
        sodium_memzero(c->password, c->password_len);
        free(c->password);
    }
    sodium_memzero(c->hash, sizeof c->hash);
    free(c);
}

/* Accepts the caller as `user_id` and runs the route. */
static void accept_user(struct cf_api *api, struct cf_api_request *r,
                        const struct route_entry *route, int64_t user_id)
{
    struct cf_user_row u;
    int rc = cf_admin_user_get(api->store, user_id, &u);
    if (rc == CF_ENOENT) {
        respond_401(r, "unknown user or wrong password");
        return;
    }
    if (!rc)
        rc = load_principal(api, &u, &r->who);
    cf_user_row_free(&u);
    if (rc) {
        cf_api_error(r, 503, NULL, "the user store is not available: %s", cf_strerror(rc));
        return;
    }
    dispatch(r, route);
}

static void basic_done(uv_work_t *w, int status)
{
    struct basic_check *c = cf_container_of(w, struct basic_check, work);
    struct cf_api *api = c->r->api;
    api->pending_auth--;
    if (api->freeing) {
        /* The daemon is going away and its server, which owns the HTTP request, may be gone
         * already: release only what is ours. */
        request_free(c->r);
        basic_check_free(c);
        if (!api->pending_auth)
            api_destroy(api);
        return;
    }
    uint64_t now = cf_mono_ms();
    if (status == 0 && c->result == 0 && c->known) {
        cache_put(api, c->digest, c->user_id);
        struct cf_api_request *r = c->r;
        const struct route_entry *route = c->route;
        int64_t uid = c->user_id;
        basic_check_free(c);
        accept_user(api, r, route, uid);
        return;
    }
    rl_fail(api, c->ip, now);
    char ukey[MAX_USER_LEN + 8];
    snprintf(ukey, sizeof ukey, "user:%s", c->user);
    rl_fail(api, ukey, now);
    /* The user name is not a secret and helps an operator see an attack; the password is never
     * logged, nor whether the name exists. */
    cf_log(CF_LOG_INFO, "auth: failed Basic login user=%s peer=%s", c->user, c->r->http->peer_addr);
    respond_401(c->r, "unknown user or wrong password");
    basic_check_free(c);
}

static bool ascii_prefix_ci(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char a = *s, b = *prefix;
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (char)(b - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

static void auth_basic(struct cf_api *api, struct cf_api_request *r,
                       const struct route_entry *route)
{
    struct cf_http_request *req = r->http;
    const char *h = cf_http_header(req, "Authorization");
    if (!h) {
        respond_401(r, "authentication required");
        return;
    }
    while (*h == ' ')
        h++;
    if (!ascii_prefix_ci(h, "basic ")) {
        respond_401(r, "only HTTP Basic authentication is accepted on this port");
        return;
    }
    h += 6;
    while (*h == ' ')
        h++;
    size_t hlen = strlen(h);
    while (hlen && (h[hlen - 1] == ' ' || h[hlen - 1] == '\t'))
        hlen--;
    size_t cap = hlen / 4 * 3 + 3;
    if (cap > MAX_USER_LEN + MAX_PASSWORD_LEN + 2) {
        respond_401(r, "malformed Basic credentials");
        return;
    }
    char *dec = cf_xmalloc(cap + 1);
    size_t dlen = 0;
    if (sodium_base642bin((unsigned char *)dec, cap, h, hlen, NULL, &dlen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        sodium_memzero(dec, cap + 1);
        free(dec);
        respond_401(r, "malformed Basic credentials");
        return;
    }
    dec[dlen] = '\0';
    char *colon = memchr(dec, ':', dlen);
    if (!colon || colon == dec || (size_t)(colon - dec) > MAX_USER_LEN || memchr(dec, '\0', dlen)) {
        sodium_memzero(dec, cap + 1);
        free(dec);
        respond_401(r, "malformed Basic credentials");
        return;
    }
    *colon = '\0';

    struct basic_check *c = cf_xcalloc(1, sizeof *c);
    c->r = r;
    c->route = route;
    cf_strlcpy(c->user, dec, sizeof c->user);
    c->password_len = strlen(colon + 1);
    c->password = cf_xstrdup(colon + 1);
    sodium_memzero(dec, cap + 1);
    free(dec);
    ip_key(req->peer_addr, c->ip, sizeof c->ip);

    uint64_t now = cf_mono_ms();
    char ukey[MAX_USER_LEN + 8];
    snprintf(ukey, sizeof ukey, "user:%s", c->user);
    uint64_t wait_ip = rl_retry_after(api, c->ip, now);
    uint64_t wait_user = rl_retry_after(api, ukey, now);
    if (wait_ip || wait_user) {
        cf_log(CF_LOG_INFO, "auth: login refused, too many failures user=%s peer=%s", c->user,
               req->peer_addr);
        basic_check_free(c);
        respond_429(r, wait_ip > wait_user ? wait_ip : wait_user);
        return;
    }

    struct cf_user_row u;
    int rc = cf_admin_user_find_name(api->store, c->user, &u);
    if (rc && rc != CF_ENOENT) {
        cf_user_row_free(&u);
        basic_check_free(c);
        cf_api_error(r, 503, NULL, "the user store is not available: %s", cf_strerror(rc));
        return;
    }
    c->known = rc == 0 && u.password_hash;
    c->user_id = c->known ? u.id : 0;
    cf_strlcpy(c->hash, c->known ? u.password_hash : api->dummy_hash, sizeof c->hash);
    cf_user_row_free(&u);

    if (c->known) {
        cache_digest(api, c->user, c->password, c->hash, c->digest);
        if (cache_hit(api, c->digest, c->user_id)) {
            int64_t uid = c->user_id;
            basic_check_free(c);
            accept_user(api, r, route, uid);
            return;
        }
    }
    api->pending_auth++;
    rc = uv_queue_work(api->loop, &c->work, basic_work, basic_done);
    if (rc) {
        api->pending_auth--;
        basic_check_free(c);
        cf_api_error(r, 503, NULL, "cannot check the password now");
    }
}

/* ---- client certificates -------------------------------------------------------------------- */

int cf__api_cert_user(struct cf_api_request *r, char *msg, size_t msglen)
{
    struct cf_api *api = r->api;
    X509 *cert = r->http->peer_cert;
    if (!cert) {
        cf_errf(msg, msglen, "a client certificate is required on this port");
        return CF_EPERM;
    }
    char *issuer = cf_api_dn_text(X509_get_issuer_name(cert));
    char *subject = cf_api_dn_text(X509_get_subject_name(cert));
    if (!issuer || !subject) {
        free(issuer);
        free(subject);
        cf_errf(msg, msglen, "the client certificate's names cannot be read");
        return CF_EPERM;
    }
    struct cf_user_row u;
    int rc = cf_admin_user_find_cert(api->store, issuer, subject, &u);
    if (rc == CF_ENOENT) {
        cf_log(CF_LOG_INFO,
               "auth: client certificate not mapped to a user subject=\"%s\" "
               "issuer=\"%s\" peer=%s",
               subject, issuer, r->http->peer_addr);
        free(issuer);
        free(subject);
        cf_errf(msg, msglen, "the client certificate is not mapped to a user");
        return CF_EPERM;
    }
    free(issuer);
    free(subject);
    if (!rc)
        rc = load_principal(api, &u, &r->who);
    cf_user_row_free(&u);
    if (rc)
        cf_errf(msg, msglen, "the user store is not available: %s", cf_strerror(rc));
    return rc;
}

static void auth_cert(struct cf_api *api, struct cf_api_request *r, const struct route_entry *route)
{
    (void)api;
    char msg[256];
    int rc = cf__api_cert_user(r, msg, sizeof msg);
    if (rc) {
        cf_api_error(r, rc == CF_EPERM ? 403 : 503, NULL, "%s", msg);
        return;
    }
    dispatch(r, route);
}

/* ---- the handler ---------------------------------------------------------------------------- */

/* The path part of the raw target: origin form "/a/b?q", or absolute form "http://h/a/b?q". */
static void target_path(const char *target, const char **start, size_t *len)
{
    const char *p = target;
    const char *scheme = strstr(p, "://");
    if (*p != '/' && scheme) {
        p = strchr(scheme + 3, '/');
        if (!p)
            p = "/";
    }
    size_t n = strcspn(p, "?#");
    *start = p;
    *len = n;
}

void cf_api_handle(void *arg, struct cf_http_request *req)
{
    struct cf_api *api = arg;
    const char *path;
    size_t path_len;
    target_path(req->target ? req->target : req->path, &path, &path_len);
    char *segs[MAX_SEGMENTS];
    int n = split_path(path, path_len, true, segs, MAX_SEGMENTS);
    if (n < 0) {
        http_error(req, 400, NULL,
                   "the request path is not valid (bad percent-encoding or too "
                   "many segments)");
        return;
    }
    bool other_method;
    struct cf_buf allow;
    cf_buf_init(&allow);
    const struct route_entry *e =
        find_route(api, req->method, segs, (size_t)n, &other_method, &allow);
    if (!e) {
        free_segs(segs, n);
        if (other_method) {
            const char *const headers[] = {"Allow", allow.data, NULL};
            char msg[256];
            snprintf(msg, sizeof msg, "method %s is not allowed here; allowed: %s", req->method,
                     allow.data);
            http_error(req, 405, headers, msg);
        } else {
            http_error(req, 404, NULL, "no such resource");
        }
        cf_buf_free(&allow);
        return;
    }
    cf_buf_free(&allow);

    struct cf_api_request *r = cf_xcalloc(1, sizeof *r);
    r->api = api;
    r->http = req;
    for (size_t i = 0; i < e->n_segs && r->n_captures < CF_API_MAX_CAPTURES; i++) {
        if (is_capture(e->segs[i])) {
            r->captures[r->n_captures++] = segs[i];
            segs[i] = NULL;
        }
    }
    free_segs(segs, n);

    if (e->r.flags & CF_ROUTE_PUBLIC) {
        e->r.fn(r);
        return;
    }
    if (req->listener == CF_LISTEN_TLS_CLIENT)
        auth_cert(api, r, e);
    else
        auth_basic(api, r, e);
}
