/*
 * Internals of the HTTP server, shared by its three files: http_conn.c is the protocol core of
 * one connection and knows nothing of sockets (bytes in, bytes out, a timer to arm); http.c owns
 * the listeners and connections on libuv and pumps bytes through OpenSSL for TLS; tls.c builds
 * the SSL_CTX of a listener. Keeping the core free of I/O lets tests and the fuzz target drive
 * the whole request path (llhttp, limits, pipelining, responses) with plain function calls.
 *
 * Ownership: the I/O layer owns a struct cf__hconn (usually embedded in its connection) and the
 * struct cf__http_env it points to; the core owns requests until they are answered, after which
 * env->retire (or free) takes them. A request whose connection closed first is "gone": it sits
 * on env->orphans until the handler answers it.
 */
#ifndef CF_NET_HTTP_INTERNAL_H
#define CF_NET_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "llhttp.h"
#include "net/http.h"

/* Counters as the core keeps them. `requests` counts requests handed to the handler;
 * `responses_by_class` counts every answer written, the server's own refusals (400, 408, 413,
 * 503, ...) included, but not answers dropped because the connection was gone. Latency runs from
 * the request being complete to its answer being queued, for handler answers only; buckets are
 * per bucket here and made cumulative by cf_http_server_stats(). */
struct cf__http_counters {
    uint64_t requests;
    uint64_t responses_by_class[6];
    uint64_t tls_handshake_failures;
    uint64_t latency_buckets[12];
    double latency_sum_s;
};

struct cf__http_req;

/* What all connections of one server share. */
struct cf__http_env {
    struct cf_http_limits limits; /* every field set (defaults applied) */
    cf_http_handler_fn handler;
    cf_http_body_limit_fn body_limit; /* may be NULL */
    void *arg;
    struct cf__http_counters counters;
    /* Takes an answered request and frees it later, so that a second answer from the same
     * handler run finds the request still there and is caught. NULL: requests are freed at
     * once (tests and the fuzz target). */
    void (*retire)(struct cf__http_env *env, struct cf__http_req *req);
    void *retire_arg;
    struct cf__http_req *orphans; /* gone, not yet answered */
};

struct cf__hconn;

/* What the core asks of the I/O layer. Every call is made on the loop thread. */
struct cf__hconn_io {
    /* Queues bytes for the peer. */
    void (*send)(struct cf__hconn *c, const void *p, size_t n);
    /* The core is done: flush what was queued, then close (lingering, so that the peer reads
     * the last answer even if it is still sending). Called at most once. */
    void (*finish)(struct cf__hconn *c);
    /* Arms the connection's one timer for `ms`, replacing the previous one; 0 stops it. */
    void (*set_timer)(struct cf__hconn *c, uint64_t ms);
    /* cf__hconn_wants_input() may have changed: start or stop reading, drain buffered input. */
    void (*input_changed)(struct cf__hconn *c);
    /* Bytes queued and not yet written; the core parses no further pipelined request while this
     * is large, so a peer that sends but never reads cannot make the server queue without end.
     * May be NULL (nothing is ever queued). */
    size_t (*backlog)(struct cf__hconn *c);
};

enum cf__hconn_phase {
    CF__PH_NEW,     /* before cf__hconn_start (TLS handshake) */
    CF__PH_IDLE,    /* keep-alive wait between requests: idle timeout, then close */
    CF__PH_HEADERS, /* waiting for or reading a request's headers: header timeout, 408 */
    CF__PH_BODY,    /* reading the body: body timeout, 408 */
    CF__PH_HANDLER, /* the handler has the request; no timer */
    CF__PH_CLOSED
};

struct cf__hconn {
    llhttp_t parser;
    const struct cf__hconn_io *io;
    struct cf__http_env *env;
    enum cf_listener_kind kind;
    int listener_index;
    char peer_addr[64];
    X509 *peer_cert;             /* owned reference, or NULL */
    STACK_OF(X509) * peer_chain; /* owned, or NULL */
    struct cf_buf in;            /* received bytes from in_off on are not parsed yet */
    size_t in_off;
    struct cf__http_req *req;   /* being read, or with the handler */
    struct cf__http_req *ready; /* complete, to be handed to the handler */
    enum cf__hconn_phase phase;
    int err_status; /* set by a parser callback that refuses the request */
    const char *err_text;
    size_t header_bytes;
    size_t url_bytes;
    size_t ext_bytes;
    bool in_process;
    bool again;
    bool draining;
    bool in_headers; /* between message begin and headers complete */
};

/* A request as the core keeps it; the public part comes first. */
struct cf__http_req {
    struct cf_http_request pub;
    uint32_t magic;
    struct cf__hconn *conn;           /* NULL once gone */
    struct cf__http_env *env;         /* NULL once the server is freed */
    struct cf__http_req *prev, *next; /* on env->orphans or a retire list */
    struct cf_buf raw; /* method, target, header names and values, path; NUL-separated */
    struct cf_buf body;
    size_t *offs; /* header name and value offsets into raw, in pairs */
    size_t n_offs, cap_offs;
    size_t method_off, target_off, path_off, query_off;
    struct cf_http_header *headers;
    size_t body_limit;
    uint64_t done_ns; /* monotonic, for the latency histogram */
    bool keep_alive;
    bool head;
    bool responded;
    bool dispatched;
};

void cf__hconn_init(struct cf__hconn *c, const struct cf__hconn_io *io, struct cf__http_env *env,
                    enum cf_listener_kind kind, int listener_index, const char *peer_addr);
/* The connection is ready for requests (after the TLS handshake): arms the header timer. */
void cf__hconn_start(struct cf__hconn *c);
/* Bytes from the peer (plaintext). */
void cf__hconn_feed(struct cf__hconn *c, const uint8_t *p, size_t n);
/* Whether the core takes more input now (false while enough is buffered or after the end). */
bool cf__hconn_wants_input(const struct cf__hconn *c);
/* The timer set through io->set_timer fired. */
void cf__hconn_timeout(struct cf__hconn *c);
/* Output drained below the backlog limit: continue with pipelined requests. */
void cf__hconn_resume(struct cf__hconn *c);
/* Answers `status` with a short text and closes (e.g. 503 for too many connections). */
void cf__hconn_reject(struct cf__hconn *c, int status, const char *text);
/* The server stops: close now if no request is under way, else after the current answer. */
void cf__hconn_drain(struct cf__hconn *c);
/* The connection is gone: a request with the handler is marked gone, anything else dropped.
 * No io call is made after this. */
void cf__hconn_detach(struct cf__hconn *c);
/* Frees what the core holds; call after cf__hconn_detach. */
void cf__hconn_free(struct cf__hconn *c);
/* Frees an answered or gone request now. */
void cf__http_req_free(struct cf__http_req *r);
/* The server is freed: orphans stop pointing at it. */
void cf__http_env_release(struct cf__http_env *env);

/* Default limits, and `in` with zero fields replaced by them. */
void cf__http_limits_fill(struct cf_http_limits *out, const struct cf_http_limits *in);

/* Builds the SSL_CTX of a TLS listener; NULL with a message naming the listener and file. */
SSL_CTX *cf__tls_ctx_new(const struct cf_listener_config *lc, size_t index, char *err,
                         size_t errlen);
/* Describes why a handshake failed, from the OpenSSL error queue and the verify result. */
void cf__tls_failure_reason(SSL *ssl, char *out, size_t outlen);

#endif
