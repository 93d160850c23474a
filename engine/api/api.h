/*
 * certflowd's HTTP surfaces: a router over the HTTP server (net/http.h) that authenticates every
 * request, then hands it to a route. Route modules (push.c for /ws/certificate/register,
 * engine_rest.c for the Camunda 7 subset under /engine-rest, v1.c for /api/v1, health.c for
 * /health and /metrics, cmrest.c for Certificate Manager's REST subset under /pgwy/api) register
 * a table of routes at start-up.
 *
 * Authentication. On the TLS_CLIENT listener the verified client certificate is mapped to a user
 * by (issuer DN, subject DN) in RFC 2253 form; an unmapped certificate gets 403. On the other
 * listeners HTTP Basic is checked against argon2id hashes (libsodium), off the loop thread;
 * unknown user and wrong password give the same 401 in the same time; repeated failures from one
 * address or for one user give 429. A route flagged CF_ROUTE_PUBLIC needs no user (health).
 * Authorization header values are never logged.
 *
 * Tenancy. A principal has a list of tenants. Every object a route touches is looked up within
 * the caller's tenants; an object of another tenant answers 404 (never 403), so ids cannot be
 * probed. Routes flagged CF_ROUTE_ADMIN need an admin user (403 otherwise).
 *
 * Errors use Camunda's body {"type": "...", "message": "..."}; certflow's own /api/v1 uses the same
 * shape. A request's answer is sent exactly once with cf_api_respond*() (or cf_http_respond on
 * r->http), now or after a commit.
 */
#ifndef CF_API_H
#define CF_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "net/http.h"
#include "run/engine.h"

struct cf_api;

struct cf_principal {
    int64_t user_id;
    char name[128];
    bool admin;
    char **tenants; /* owned */
    size_t n_tenants;
};

bool cf_principal_has_tenant(const struct cf_principal *p, const char *tenant_id);

#define CF_API_MAX_CAPTURES 8

struct cf_api_request {
    struct cf_api *api;
    struct cf_http_request *http;
    struct cf_principal who;                   /* valid when the route is not public */
    const char *captures[CF_API_MAX_CAPTURES]; /* {name} parts of the pattern, decoded */
    size_t n_captures;
    void *data; /* free for the route */
};

typedef void (*cf_route_fn)(struct cf_api_request *r);

#define CF_ROUTE_ADMIN 0x1u  /* admin users only */
#define CF_ROUTE_PUBLIC 0x2u /* no authentication (health) */

struct cf_route {
    const char *method;  /* "GET", "POST", "PUT", "DELETE" */
    const char *pattern; /* "/engine-rest/process-definition/{id}/xml"; {x} matches one segment */
    cf_route_fn fn;
    unsigned flags;
    size_t body_limit; /* 0: the server default (64 KiB) */
};

struct cf_api_config {
    struct cf_engine *engine;
    const char *data_dir;
    bool metrics_public;             /* /metrics without authentication (loopback scrapers) */
    uv_loop_t *loop;                 /* the engine's loop, for password checks on the thread pool;
                                        NULL: uv_default_loop() */
    int auth_failure_limit;          /* failed logins per address and per user name in one window
                                        before 429; 0: 10 */
    uint64_t auth_failure_window_ms; /* 0: 60 s */
    uint64_t auth_cache_ttl_ms;      /* how long a verified Basic credential is remembered (as a
                                        keyed hash, never the password); 0: 60 s */
    bool auth_cache_off;             /* verify every request with argon2id */
};

int cf_api_new(const struct cf_api_config *cfg, struct cf_api **out, char *err, size_t errlen);
void cf_api_free(struct cf_api *api);
void cf_api_register(struct cf_api *api, const struct cf_route *routes, size_t n);
/* The HTTP server's handler and body-limit callbacks, with `arg` = the api. */
void cf_api_handle(void *arg, struct cf_http_request *req);
size_t cf_api_body_limit(void *arg, const char *method, const char *path);
struct cf_engine *cf_api_engine(struct cf_api *api);
struct cf_store *cf_api_store(struct cf_api *api);
/* For /metrics: the server whose stats to report (set after it starts). */
void cf_api_set_server(struct cf_api *api, struct cf_http_server *server);
struct cf_http_server *cf_api_server(struct cf_api *api);

/* Answers; these finish the request and free `r`. */
void cf_api_respond_json(struct cf_api_request *r, int status, json_t *body);
void cf_api_respond(struct cf_api_request *r, int status, const char *content_type,
                    const void *body, size_t len);
void cf_api_error(struct cf_api_request *r, int status, const char *type, const char *fmt, ...)
    CF_PRINTF(4, 5);
void cf_api_no_content(struct cf_api_request *r);

/* Route modules. */
void cf_api_push_routes(struct cf_api *api);
void cf_api_engine_rest_routes(struct cf_api *api);
void cf_api_v1_routes(struct cf_api *api);
void cf_api_health_routes(struct cf_api *api);
/* Certificate Manager's REST subset under /pgwy/api (docs/cm-rest.md), issuing through `ca` (the
 * daemon's "ca" service; NULL: issuing answers -1). Detach `ca` before cf_api_free(): requests
 * still under way then get their answer (-1) from the detach. */
struct cf_ca_svc;
void cf_api_cmrest_routes(struct cf_api *api, struct cf_ca_svc *ca);

/* Counters of the push endpoint, for /metrics. */
struct cf_push_stats {
    uint64_t accepted;   /* 201 */
    uint64_t duplicates; /* 200: the same certificate again */
    uint64_t rejected;   /* 4xx */
    uint64_t failed;     /* 5xx */
};
void cf_api_push_stats(const struct cf_api *api, struct cf_push_stats *out);

/* Hook for the engine observer's incident callback (the daemon owns the observer): when the
 * instance, or the instance that called it, was started by a push, one line with
 * "CertificatePublicationException certificateId=<id>" and the reason is logged after the
 * current transaction. */
void cf_api_push_incident(struct cf_api *api, int64_t instance_id, const char *activity_id,
                          const char *type, const char *message);

/* True while the router still waits for work of its own (password checks on the thread pool,
 * pushes waiting for their commit); a daemon that shuts down waits for it to become false. */
bool cf_api_busy(const struct cf_api *api);

/* The RFC 2253 text of a DN (X509_NAME_print_ex with XN_FLAG_RFC2253) as users are mapped by
 * it; a new string, or NULL when it cannot be printed. */
char *cf_api_dn_text(const X509_NAME *name);

#endif
