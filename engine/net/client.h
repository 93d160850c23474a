/*
 * certflow's HTTP client: libcurl's multi interface driven by a libuv loop (curl's socket and
 * timer callbacks mapped onto uv_poll_t and uv_timer_t handles), so that talking to a remote CA
 * never blocks the loop. Used by the CA connectors (ca/conn_cmp.c, ca/conn_cmrest.c).
 *
 * One client per loop, shared by its users: libcurl keeps connections alive and reuses them per
 * host, port and TLS settings. Everything runs on the loop thread: cf_httpc_* may be called only
 * there, and `done` always runs there, exactly once per accepted request, never from inside
 * cf_httpc_send() or cf_httpc_cancel().
 *
 * TLS: certificates are always verified (peer and host name); there is no switch to turn that
 * off. Trust anchors come from `ca_file`, or the system store when it is NULL. A client
 * certificate and key (PEM files; the key may be encrypted with `key_password`) authenticate the
 * client. TLS 1.2 is the minimum.
 *
 * Failure classes (enum cf_httpc_fail) are what a connector maps onto CaConnectionFailed; an
 * HTTP status of 4xx or 5xx is not a failure of the transfer: the caller reads `status`. `sent`
 * tells whether request bytes may have reached the server, so that a caller knows whether
 * sending again might repeat a side effect (reliability.md R7: refused before any byte was sent is
 * safe to resend).
 *
 * Secrets: key_password and request bodies never appear in the client's log lines or messages.
 */
#ifndef CF_NET_CLIENT_H
#define CF_NET_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define CF_HTTPC_DEFAULT_TIMEOUT_MS 30000
#define CF_HTTPC_DEFAULT_MAX_RESPONSE (1024 * 1024)

struct cf_httpc;
struct cf_httpc_xfer;

struct cf_httpc_header {
    const char *name;
    const char *value;
};

struct cf_httpc_tls {
    const char *ca_file;      /* PEM trust anchors for the server; NULL: the system store */
    const char *cert_file;    /* PEM client certificate (chain); NULL: none */
    const char *key_file;     /* PEM private key of cert_file; NULL: none */
    const char *key_password; /* for an encrypted key_file; NULL: not encrypted */
};

struct cf_httpc_req {
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    const char *url;    /* http:// or https:// only */
    const struct cf_httpc_header *headers;
    size_t n_headers;
    const uint8_t *body; /* copied by cf_httpc_send(); NULL with body_len 0: no body */
    size_t body_len;
    uint64_t timeout_ms;            /* whole exchange; 0: CF_HTTPC_DEFAULT_TIMEOUT_MS */
    uint64_t connect_timeout_ms;    /* 0: the same as timeout_ms */
    size_t max_response;            /* body bytes; 0: CF_HTTPC_DEFAULT_MAX_RESPONSE */
    const struct cf_httpc_tls *tls; /* NULL: defaults (system store, no client certificate) */
};

enum cf_httpc_fail {
    CF_HTTPC_OK = 0,    /* a complete HTTP response arrived (any status) */
    CF_HTTPC_RESOLVE,   /* the host name could not be resolved */
    CF_HTTPC_CONNECT,   /* refused, unreachable, reset before the request was sent */
    CF_HTTPC_TLS,       /* handshake failed: untrusted or mismatched certificate, protocol */
    CF_HTTPC_TIMEOUT,   /* connect or whole-exchange timeout */
    CF_HTTPC_SEND_RECV, /* the connection broke while sending or receiving */
    CF_HTTPC_TOO_LARGE, /* the response body exceeded max_response */
    CF_HTTPC_PROTOCOL,  /* not a valid HTTP response */
    CF_HTTPC_LOCAL,     /* on our side: unreadable client certificate or key, bad URL */
    CF_HTTPC_CANCELED,  /* cf_httpc_cancel() or cf_httpc_close() */
};

struct cf_httpc_resp {
    enum cf_httpc_fail fail;
    bool sent;                /* request bytes may have reached the server */
    const char *error;        /* for people, when fail != CF_HTTPC_OK: names the URL's host and port
                               * and the cause ("connection refused", "certificate verify failed: ...") */
    long status;              /* HTTP status when fail == CF_HTTPC_OK; status, headers and
                               * body are empty otherwise */
    const char *content_type; /* the Content-Type header's value, or NULL */
    const struct cf_httpc_header *headers; /* every response header, in order received */
    size_t n_headers;
    const uint8_t *body; /* NUL-terminated for convenience (the NUL is not counted) */
    size_t body_len;
    uint64_t elapsed_ms;
};

/* The response and everything it points to are valid during `done` only. */
typedef void (*cf_httpc_done_fn)(void *arg, const struct cf_httpc_resp *resp);

/* A client on `loop`. 0, or a CF_E* code with a message in `err`. */
int cf_httpc_new(uv_loop_t *loop, struct cf_httpc **out, char *err, size_t errlen);

/* Starts a request. 0: `done` will run exactly once (and *xfer, when not NULL, names the transfer
 * until then); negative CF_E* code: `done` will not run. CF_EINVAL for a method other than GET,
 * POST, PUT and DELETE, a GET with a body, or a header name or value with CR, LF or other bytes
 * not allowed there; a URL that does not parse or is not http(s) is reported through `done`, as
 * CF_HTTPC_LOCAL with sent=false. Proxies are never used, whatever the environment says, and
 * requests are HTTP/1.1. */
int cf_httpc_send(struct cf_httpc *c, const struct cf_httpc_req *req, cf_httpc_done_fn done,
                  void *arg, struct cf_httpc_xfer **xfer);

/* The value of the first response header called `name` (case-insensitive), or NULL. */
const char *cf_httpc_resp_header(const struct cf_httpc_resp *resp, const char *name);

/* Ends a transfer under way; its `done` runs soon with CF_HTTPC_CANCELED, also when it had
 * finished but its `done` had not run yet. A transfer whose `done` has run must not be
 * canceled. */
void cf_httpc_cancel(struct cf_httpc_xfer *x);

/* Cancels every transfer (their `done` run with CF_HTTPC_CANCELED), closes the loop handles and
 * frees the client once they are closed; `closed` (may be NULL) runs then. Run the loop until
 * it has. NULL is a no-op. */
void cf_httpc_close(struct cf_httpc *c, void (*closed)(void *arg), void *arg);

#endif
