/*
 * The HTTP/1.1 server of certflowd on libuv: llhttp (strict mode, C sources from Debian's
 * node-llhttp) for parsing, OpenSSL over memory BIOs for TLS. One server may have several
 * listeners: TLS that requires a client certificate chaining to a truststore, TLS without client
 * certificates (for HTTP Basic), and plain HTTP bound only to a loopback address.
 *
 * Limits (each with its status): request line and URL 2 KiB (414), headers 8 KiB in all or more
 * than 64 of them (431), body over the route's limit (413, decided from Content-Length before any
 * body is read), header time and body time (408), too many connections (503 then close).
 * Request smuggling is refused: Content-Length together with Transfer-Encoding, duplicate or
 * invalid Content-Length (400 and close). Keep-alive with an idle timeout. TLS 1.2 and 1.3 only,
 * with ECDHE + AES-GCM/CHACHA20 for 1.2, no renegotiation, a handshake timeout.
 *
 * Requests are handed to one handler (the router) on the loop thread once complete (headers and
 * body). The handler answers now or later with cf_http_respond(), exactly once; the request stays
 * valid until then. If the connection closes first, the request is marked gone and the response
 * is dropped (the handler still must respond, to release it). A handler may decide on the body
 * size limit early: `limit_body` is called when headers are complete.
 *
 * Ownership: the server owns requests; header and body pointers are valid until the response.
 * It copies the listener configuration's strings at start; the caller's may go away.
 * Free the server with cf_http_server_close(), then run the loop until its handles are closed.
 * If cf_http_server_start() fails after opening a socket (a port in use), it closes what it
 * opened the same way: run the loop before uv_loop_close(). The process must ignore SIGPIPE, as
 * libuv writes to sockets with write(2).
 */
#ifndef CF_NET_HTTP_H
#define CF_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>
#include <uv.h>

#include "base/base.h"

enum cf_listener_kind {
    CF_LISTEN_PLAIN,     /* http, loopback only */
    CF_LISTEN_TLS,       /* https, no client certificate asked */
    CF_LISTEN_TLS_CLIENT /* https, a client certificate that chains to the truststore required */
};

struct cf_listener_config {
    enum cf_listener_kind kind;
    const char *host;      /* "127.0.0.1", "::", ... */
    int port;              /* 0: an ephemeral port (see cf_http_listener_port) */
    const char *cert_file; /* PEM server certificate chain (TLS kinds) */
    const char *key_file;  /* PEM private key (TLS kinds) */
    const char *ca_file;   /* PEM truststore for client certificates (TLS_CLIENT) */
    const char *crl_file;  /* optional PEM CRLs checked for client certificates */
};

struct cf_http_limits {
    size_t max_header_bytes;       /* 8192 */
    size_t max_headers;            /* 64 */
    size_t max_url_bytes;          /* 2048 */
    size_t max_body_bytes;         /* default body limit, 64 KiB; routes may raise it */
    uint64_t header_timeout_ms;    /* 10 s */
    uint64_t body_timeout_ms;      /* 30 s */
    uint64_t idle_timeout_ms;      /* 60 s keep-alive */
    uint64_t handshake_timeout_ms; /* 10 s */
    int max_connections;           /* per listener, 1024 */
};

struct cf_http_header {
    const char *name; /* as received */
    const char *value;
};

struct cf_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *target; /* raw request target */
    const char *path;   /* percent-decoded path, without query */
    const char *query;  /* raw query string without '?', or "" */
    const struct cf_http_header *headers;
    size_t n_headers;
    const uint8_t *body;
    size_t body_len;
    enum cf_listener_kind listener;
    int listener_index;          /* position of the listener in the config */
    X509 *peer_cert;             /* verified client certificate (TLS_CLIENT), or NULL; borrowed */
    STACK_OF(X509) * peer_chain; /* its verified chain, or NULL; borrowed */
    char peer_addr[64];          /* "127.0.0.1:54321" */
    uint64_t received_ms;        /* monotonic time the request was complete */
    bool gone;                   /* the connection closed before the response */
    void *user;                  /* free for the handler */
};

/* Case-insensitive header lookup; the first value, or NULL. */
const char *cf_http_header(const struct cf_http_request *req, const char *name);
/* A query parameter, percent-decoded into `out`; returns 0, CF_ENOENT, or CF_ELIMIT. */
int cf_http_query_param(const struct cf_http_request *req, const char *name, char *out,
                        size_t outlen);

struct cf_http_server;

typedef void (*cf_http_handler_fn)(void *arg, struct cf_http_request *req);
/* Called when headers are complete; returns the body limit for this request (0: the default). */
typedef size_t (*cf_http_body_limit_fn)(void *arg, const char *method, const char *path);

struct cf_http_server_config {
    const struct cf_listener_config *listeners;
    size_t n_listeners;
    struct cf_http_limits limits; /* zero fields take the defaults above */
    cf_http_handler_fn handler;
    cf_http_body_limit_fn body_limit; /* may be NULL */
    void *arg;
};

int cf_http_server_start(uv_loop_t *loop, const struct cf_http_server_config *cfg,
                         struct cf_http_server **out, char *err, size_t errlen);
/* The port a listener is bound to (useful with port 0). */
int cf_http_listener_port(const struct cf_http_server *s, size_t index);
/* Reads the certificate chain, key, truststore and CRL files of every TLS listener again (the
 * paths given at start) and uses them for new connections; connections already open keep the
 * material they started with. All or nothing: when a file does not load, every listener keeps
 * its previous material and `err` names the listener, the file and OpenSSL's reason (never file
 * contents); returns CF_EINVAL then. Call on the loop thread. */
int cf_http_server_reload_tls(struct cf_http_server *s, char *err, size_t errlen);
/* Stops accepting; open connections finish their current request, then close. */
void cf_http_server_stop_accepting(struct cf_http_server *s);
/* Closes everything; the server is freed once its handles are closed. */
void cf_http_server_close(struct cf_http_server *s);

/* Answers a request: status, extra headers (NULL-terminated name/value pairs, may be NULL),
 * body. Content-Length, Date and Connection are added by the server. Copies what it needs. */
void cf_http_respond(struct cf_http_request *req, int status, const char *content_type,
                     const char *const *headers, const void *body, size_t body_len);
/* A JSON answer; takes the reference to `json` (a jansson json_t *). */
void cf_http_respond_json(struct cf_http_request *req, int status, void *json);

/* Counters for /metrics. */
struct cf_http_stats {
    uint64_t requests;
    uint64_t responses_by_class[6]; /* index status/100 */
    uint64_t open_connections;
    uint64_t tls_handshake_failures;
    uint64_t latency_bucket_counts[12]; /* cumulative histogram, see cf_http_latency_bounds */
    double latency_sum_s;
};
void cf_http_server_stats(const struct cf_http_server *s, struct cf_http_stats *out);
/* Upper bounds in seconds of the latency histogram buckets (12, last is +Inf). */
extern const double cf_http_latency_bounds[12];

#endif
