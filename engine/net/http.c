/*
 * The HTTP server on libuv: listeners, connections and their bytes. Each connection embeds its
 * TCP handle and one timer and is freed only when both are closed. Plain connections feed what
 * they read straight into the protocol core (http_conn.c); TLS connections put it into a memory
 * BIO, drive the handshake from reads, and feed what SSL_read decrypts. Answers go the other way
 * through SSL_write and the write BIO to uv_write.
 *
 * Closing after a last answer is lingering: the answer is flushed, the write side shut down, and
 * whatever the peer still sends is read and dropped for a short while. Closing at once would
 * make the kernel reset the connection while the peer is still sending (a refused upload, a
 * slowloris), and a reset can destroy the answer before the peer reads it.
 *
 * TLS files are read again on request (cf_http_server_reload_tls): each listener's SSL_CTX is
 * replaced for new connections, while every open connection's SSL keeps a reference to the
 * context it was made from, so nothing in progress is cut or changes its verification.
 *
 * The process must ignore SIGPIPE: libuv writes with write(2), and a peer that resets the
 * connection would otherwise kill the daemon. That is the daemon's setup, not this file's.
 */
#include "net/http_internal.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#define READ_BUF_SIZE (64 * 1024)
#define TLS_BUF_SIZE (16 * 1024)
/* How long, and how much, a closing connection is read and ignored. */
#define LINGER_MS 2000
#define LINGER_BYTES (1024 * 1024)
/* Connections beyond the cap that still get their 503; further ones are closed unanswered. */
#define REJECT_EXTRA 64

struct cf_http_server;

struct listener {
    struct cf_http_server *server;
    uv_tcp_t tcp;
    size_t index;
    enum cf_listener_kind kind;
    /* New connections take a reference on the current context (SSL_new), so a reload swaps it
     * and drops the server's reference while open connections keep theirs. */
    SSL_CTX *ctx;
    struct cf_listener_config files; /* kind and owned copies of the file names, for reloads */
    struct sockaddr_storage addr;
    int port;
    int open;      /* connections counted toward max_connections */
    int rejecting; /* connections being answered 503 */
    bool has_handle;
    bool cap_warned;
};

struct conn {
    struct cf__hconn core;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct listener *lst;
    struct cf_http_server *server;
    struct conn *prev, *next;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    int handles;
    size_t lingered;
    bool handshake_done;
    bool reading;
    bool pumping;
    bool finishing; /* the core is done; flushing, then lingering */
    bool lingering;
    bool peer_eof;
    bool broken; /* a write failed; closed from the timer, never inside the core */
    bool closing;
    bool counted;
    bool rejected;
};

struct wreq {
    uv_write_t req;
    struct conn *conn;
    char data[];
};

struct cf_http_server {
    uv_loop_t *loop;
    struct cf__http_env env;
    struct listener *listeners;
    size_t n_listeners;
    struct conn *conns;
    uint64_t n_conns;
    uv_idle_t reaper;
    bool has_reaper;
    struct cf__http_req *retired;
    int handles;
    bool closing;
    /* Shared by all connections: every read is copied out before its callback returns. */
    char *readbuf;
    uint8_t *tlsbuf;
};

static void conn_close(struct conn *cn);
static void tls_pump(struct conn *cn);
static void timer_cb(uv_timer_t *t);

static struct conn *conn_of(struct cf__hconn *c)
{
    return cf_container_of(c, struct conn, core);
}

/* ---- server lifetime ---- */

static char *dup_or_null(const char *s)
{
    return s ? cf_xstrdup(s) : NULL;
}

static void free_listeners(struct listener *ls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        SSL_CTX_free(ls[i].ctx);
        free((char *)ls[i].files.cert_file);
        free((char *)ls[i].files.key_file);
        free((char *)ls[i].files.ca_file);
        free((char *)ls[i].files.crl_file);
    }
    free(ls);
}

static void server_maybe_free(struct cf_http_server *s)
{
    if (!s->closing || s->handles > 0 || s->conns)
        return;
    while (s->retired) {
        struct cf__http_req *r = s->retired;
        s->retired = r->next;
        cf__http_req_free(r);
    }
    cf__http_env_release(&s->env);
    free_listeners(s->listeners, s->n_listeners);
    free(s->readbuf);
    free(s->tlsbuf);
    free(s);
}

static void server_handle_closed(uv_handle_t *h)
{
    struct cf_http_server *s = h->data;
    s->handles--;
    server_maybe_free(s);
}

static void listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    struct cf_http_server *s = l->server;
    s->handles--;
    server_maybe_free(s);
}

static void reaper_cb(uv_idle_t *h)
{
    struct cf_http_server *s = h->data;
    while (s->retired) {
        struct cf__http_req *r = s->retired;
        s->retired = r->next;
        cf__http_req_free(r);
    }
    uv_idle_stop(h);
}

/* Answered requests are freed on the next loop turn, so a handler that answers twice in one go
 * meets a request marked answered instead of freed memory. */
static void retire_req(struct cf__http_env *env, struct cf__http_req *r)
{
    struct cf_http_server *s = env->retire_arg;
    if (s->closing || !s->has_reaper) {
        cf__http_req_free(r);
        return;
    }
    r->prev = NULL;
    r->next = s->retired;
    s->retired = r;
    if (!uv_is_active((uv_handle_t *)&s->reaper))
        uv_idle_start(&s->reaper, reaper_cb);
}

/* ---- writing ---- */

static void mark_broken(struct conn *cn)
{
    if (cn->broken || cn->closing)
        return;
    cn->broken = true;
    uv_timer_start(&cn->timer, timer_cb, 0, 0);
}

static void write_cb(uv_write_t *w, int status)
{
    struct wreq *wr = cf_container_of(w, struct wreq, req);
    struct conn *cn = wr->conn;
    free(wr);
    if (cn->closing)
        return;
    if (status < 0) {
        conn_close(cn);
        return;
    }
    if (!cn->finishing && !cn->broken)
        cf__hconn_resume(&cn->core);
}

static void write_raw(struct conn *cn, const void *p, size_t n)
{
    if (cn->closing || cn->broken || n == 0)
        return;
    struct wreq *wr = cf_xmalloc(sizeof(*wr) + n);
    wr->conn = cn;
    memcpy(wr->data, p, n);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    if (uv_write(&wr->req, (uv_stream_t *)&cn->tcp, &b, 1, write_cb) != 0) {
        free(wr);
        mark_broken(cn);
    }
}

/* Moves what OpenSSL wrote into the write BIO onto the socket. */
static void tls_flush(struct conn *cn)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(cn->wbio)) > 0) {
        if (cn->closing || cn->broken) {
            (void)BIO_reset(cn->wbio);
            return;
        }
        struct wreq *wr = cf_xmalloc(sizeof(*wr) + pending);
        wr->conn = cn;
        int n = BIO_read(cn->wbio, wr->data, (int)pending);
        if (n <= 0) {
            free(wr);
            return;
        }
        uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
        if (uv_write(&wr->req, (uv_stream_t *)&cn->tcp, &b, 1, write_cb) != 0) {
            free(wr);
            mark_broken(cn);
            return;
        }
    }
}

/* ---- what the core asks for ---- */

static void io_send(struct cf__hconn *c, const void *p, size_t n)
{
    struct conn *cn = conn_of(c);
    if (!cn->ssl) {
        write_raw(cn, p, n);
        return;
    }
    if (cn->closing || cn->broken)
        return;
    ERR_clear_error();
    size_t off = 0;
    while (off < n) {
        size_t w = 0;
        if (SSL_write_ex(cn->ssl, (const char *)p + off, n - off, &w) != 1) {
            char why[256];
            cf__tls_failure_reason(cn->ssl, why, sizeof(why));
            cf_log(CF_LOG_DEBUG, "http: tls write failed peer=%s reason=%s", cn->core.peer_addr,
                   why);
            mark_broken(cn);
            return;
        }
        off += w;
    }
    tls_flush(cn);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *cn = h->data;
    buf->base = cn->server->readbuf;
    buf->len = READ_BUF_SIZE;
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void update_reading(struct conn *cn)
{
    if (cn->closing)
        return;
    bool want =
        cn->finishing || (cn->ssl && !cn->handshake_done) || cf__hconn_wants_input(&cn->core);
    if (cn->finishing && cn->peer_eof)
        want = false;
    if (want && !cn->reading) {
        if (uv_read_start((uv_stream_t *)&cn->tcp, alloc_cb, read_cb) == 0)
            cn->reading = true;
    } else if (!want && cn->reading) {
        uv_read_stop((uv_stream_t *)&cn->tcp);
        cn->reading = false;
    }
}

static void io_input_changed(struct cf__hconn *c)
{
    struct conn *cn = conn_of(c);
    update_reading(cn);
    /* Input may wait inside OpenSSL while the core was busy: no read will come for it. */
    if (cn->ssl && cn->handshake_done && !cn->pumping && !cn->closing && !cn->finishing &&
        cf__hconn_wants_input(c) && (SSL_pending(cn->ssl) > 0 || BIO_ctrl_pending(cn->rbio) > 0))
        tls_pump(cn);
}

static void io_set_timer(struct cf__hconn *c, uint64_t ms)
{
    struct conn *cn = conn_of(c);
    if (cn->closing || cn->broken || cn->finishing)
        return;
    if (ms)
        uv_timer_start(&cn->timer, timer_cb, ms, 0);
    else
        uv_timer_stop(&cn->timer);
}

static size_t io_backlog(struct cf__hconn *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&conn_of(c)->tcp);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct conn *cn = cf_container_of(req, struct conn, shutdown);
    if (cn->closing)
        return;
    if (status < 0 || cn->peer_eof) {
        conn_close(cn);
        return;
    }
    cn->lingering = true;
    uv_timer_start(&cn->timer, timer_cb, LINGER_MS, 0);
    update_reading(cn);
}

/* Flushes, shuts the write side down and lingers; the timer bounds both the flush (a peer that
 * never reads) and the lingering. */
static void conn_finish(struct conn *cn)
{
    if (cn->finishing || cn->closing)
        return;
    cn->finishing = true;
    if (cn->broken)
        return;
    if (cn->ssl && cn->handshake_done) {
        ERR_clear_error();
        (void)SSL_shutdown(cn->ssl);
        ERR_clear_error();
        tls_flush(cn);
    }
    if (cn->broken)
        return;
    uv_timer_start(&cn->timer, timer_cb, cn->server->env.limits.idle_timeout_ms, 0);
    if (uv_shutdown(&cn->shutdown, (uv_stream_t *)&cn->tcp, shutdown_cb) != 0) {
        mark_broken(cn);
        return;
    }
    update_reading(cn);
}

static void io_finish(struct cf__hconn *c)
{
    conn_finish(conn_of(c));
}

static const struct cf__hconn_io conn_io = {
    .send = io_send,
    .finish = io_finish,
    .set_timer = io_set_timer,
    .input_changed = io_input_changed,
    .backlog = io_backlog,
};

/* ---- connection lifetime ---- */

static void conn_handle_closed(uv_handle_t *h)
{
    struct conn *cn = h->data;
    if (--cn->handles > 0)
        return;
    struct cf_http_server *s = cn->server;
    if (cn->prev)
        cn->prev->next = cn->next;
    else
        s->conns = cn->next;
    if (cn->next)
        cn->next->prev = cn->prev;
    s->n_conns--;
    SSL_free(cn->ssl);
    cf__hconn_free(&cn->core);
    free(cn);
    server_maybe_free(s);
}

/* Closes at once; a request the handler holds becomes gone. */
static void conn_close(struct conn *cn)
{
    if (cn->closing)
        return;
    cn->closing = true;
    cf__hconn_detach(&cn->core);
    if (cn->counted)
        cn->lst->open--;
    if (cn->rejected)
        cn->lst->rejecting--;
    cn->counted = cn->rejected = false;
    uv_close((uv_handle_t *)&cn->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&cn->timer, conn_handle_closed);
}

static void handshake_failed(struct conn *cn, const char *what)
{
    char why[320];
    if (what)
        cf_strlcpy(why, what, sizeof(why));
    else
        cf__tls_failure_reason(cn->ssl, why, sizeof(why));
    cf_log(CF_LOG_DEBUG, "http: tls handshake failed peer=%s listener=%zu reason=%s",
           cn->core.peer_addr, cn->lst->index, why);
    cn->server->env.counters.tls_handshake_failures++;
    /* The alert OpenSSL queued goes out before the close. */
    tls_flush(cn);
    conn_finish(cn);
}

static void handshake_done(struct conn *cn)
{
    cn->handshake_done = true;
    if (cn->lst->kind == CF_LISTEN_TLS_CLIENT) {
        X509 *peer = SSL_get0_peer_certificate(cn->ssl);
        /* Verification is mandatory on this listener; this only guards against surprises. */
        if (!peer || SSL_get_verify_result(cn->ssl) != X509_V_OK) {
            handshake_failed(cn, "no verified client certificate");
            return;
        }
        X509_up_ref(peer);
        cn->core.peer_cert = peer;
        STACK_OF(X509) *chain = SSL_get0_verified_chain(cn->ssl);
        if (chain)
            cn->core.peer_chain = X509_chain_up_ref(chain);
    }
    if (cn->rejected)
        cf__hconn_reject(&cn->core, 503, "too many connections");
    else
        cf__hconn_start(&cn->core);
}

static void tls_pump(struct conn *cn)
{
    if (cn->pumping || cn->closing || cn->finishing)
        return;
    cn->pumping = true;
    if (!cn->handshake_done) {
        ERR_clear_error();
        int r = SSL_do_handshake(cn->ssl);
        if (r != 1) {
            int e = SSL_get_error(cn->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                tls_flush(cn);
            else
                handshake_failed(cn, NULL);
            cn->pumping = false;
            return;
        }
        tls_flush(cn);
        handshake_done(cn);
    }
    while (!cn->closing && !cn->finishing && !cn->broken && cf__hconn_wants_input(&cn->core)) {
        ERR_clear_error();
        int n = SSL_read(cn->ssl, cn->server->tlsbuf, TLS_BUF_SIZE);
        if (n > 0) {
            cf__hconn_feed(&cn->core, cn->server->tlsbuf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(cn->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e != SSL_ERROR_ZERO_RETURN) {
            char why[256];
            cf__tls_failure_reason(cn->ssl, why, sizeof(why));
            cf_log(CF_LOG_DEBUG, "http: tls read failed peer=%s reason=%s", cn->core.peer_addr,
                   why);
        }
        /* close_notify or a broken record: the peer is gone either way. */
        conn_close(cn);
        break;
    }
    if (!cn->closing)
        tls_flush(cn);
    cn->pumping = false;
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *cn = st->data;
    if (cn->closing || nread == 0)
        return;
    if (nread < 0) {
        if (cn->finishing && !cn->lingering) {
            /* The peer is done sending; let the answer drain, then close. */
            cn->peer_eof = true;
            update_reading(cn);
            return;
        }
        if (cn->ssl && !cn->handshake_done && !cn->finishing)
            handshake_failed(cn, nread == UV_EOF ? "peer closed during the handshake"
                                                 : uv_strerror((int)nread));
        conn_close(cn);
        return;
    }
    if (cn->finishing) {
        cn->lingered += (size_t)nread;
        if (cn->lingered > LINGER_BYTES)
            conn_close(cn);
        return;
    }
    if (cn->ssl) {
        if (BIO_write(cn->rbio, buf->base, (int)nread) != (int)nread) {
            conn_close(cn);
            return;
        }
        tls_pump(cn);
    } else {
        cf__hconn_feed(&cn->core, (const uint8_t *)buf->base, (size_t)nread);
    }
    update_reading(cn);
}

static void timer_cb(uv_timer_t *t)
{
    struct conn *cn = t->data;
    if (cn->closing)
        return;
    if (cn->broken || cn->finishing) {
        conn_close(cn);
        return;
    }
    if (cn->ssl && !cn->handshake_done) {
        cf_log(CF_LOG_DEBUG, "http: tls handshake timed out peer=%s listener=%zu",
               cn->core.peer_addr, cn->lst->index);
        cn->server->env.counters.tls_handshake_failures++;
        conn_close(cn);
        return;
    }
    cf__hconn_timeout(&cn->core);
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char ip[48] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(out, outlen, "%s:%d", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(out, outlen, "[%s]:%d", ip, port);
    } else {
        cf_strlcpy(out, "?", outlen);
    }
}

static void on_connection(uv_stream_t *st, int status)
{
    struct listener *l = st->data;
    struct cf_http_server *s = l->server;
    if (status < 0) {
        cf_log(CF_LOG_WARN, "http: accept failed listener=%zu error=%s", l->index,
               uv_strerror(status));
        return;
    }
    struct conn *cn = cf_xcalloc(1, sizeof(*cn));
    cn->server = s;
    cn->lst = l;
    uv_tcp_init(s->loop, &cn->tcp);
    uv_timer_init(s->loop, &cn->timer);
    cn->tcp.data = cn;
    cn->timer.data = cn;
    cn->handles = 2;
    cn->next = s->conns;
    if (s->conns)
        s->conns->prev = cn;
    s->conns = cn;
    s->n_conns++;

    int rc = uv_accept(st, (uv_stream_t *)&cn->tcp);
    char peer[64] = "?";
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (rc == 0 && uv_tcp_getpeername(&cn->tcp, (struct sockaddr *)&ss, &sslen) == 0)
        format_addr(&ss, peer, sizeof(peer));
    cf__hconn_init(&cn->core, &conn_io, &s->env, l->kind, (int)l->index, peer);
    if (rc != 0) {
        cf_log(CF_LOG_WARN, "http: accept failed listener=%zu error=%s", l->index, uv_strerror(rc));
        conn_close(cn);
        return;
    }
    uv_tcp_nodelay(&cn->tcp, 1);

    if (l->open >= s->env.limits.max_connections) {
        if (!l->cap_warned)
            cf_log(CF_LOG_WARN, "http: connection limit reached listener=%zu max=%d", l->index,
                   s->env.limits.max_connections);
        l->cap_warned = true;
        if (l->rejecting >= REJECT_EXTRA) {
            conn_close(cn);
            return;
        }
        cn->rejected = true;
        l->rejecting++;
    } else {
        l->cap_warned = false;
        cn->counted = true;
        l->open++;
    }

    if (l->ctx) {
        cn->ssl = SSL_new(l->ctx);
        cn->rbio = BIO_new(BIO_s_mem());
        cn->wbio = BIO_new(BIO_s_mem());
        if (!cn->ssl || !cn->rbio || !cn->wbio) {
            cf_log(CF_LOG_ERROR, "http: TLS session setup failed peer=%s", peer);
            BIO_free(cn->rbio);
            BIO_free(cn->wbio);
            cn->rbio = cn->wbio = NULL;
            conn_close(cn);
            return;
        }
        /* An empty read BIO means "wait for more", not end of stream. */
        BIO_set_mem_eof_return(cn->rbio, -1);
        SSL_set_bio(cn->ssl, cn->rbio, cn->wbio);
        SSL_set_accept_state(cn->ssl);
        uv_timer_start(&cn->timer, timer_cb, s->env.limits.handshake_timeout_ms, 0);
    } else if (cn->rejected) {
        cf__hconn_reject(&cn->core, 503, "too many connections");
    } else {
        cf__hconn_start(&cn->core);
    }
    update_reading(cn);
}

/* ---- listeners ---- */

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return IN6_IS_ADDR_LOOPBACK(a) ||
               (memcmp(a->s6_addr, v4mapped, sizeof(v4mapped)) == 0 && a->s6_addr[12] == 127);
    }
    return false;
}

static int parse_addr(const struct cf_listener_config *lc, size_t i, struct sockaddr_storage *ss,
                      char *err, size_t errlen)
{
    memset(ss, 0, sizeof(*ss));
    if (!lc->host || !*lc->host) {
        cf_errf(err, errlen, "listener %zu: no host given", i);
        return CF_EINVAL;
    }
    if (lc->port < 0 || lc->port > 65535) {
        cf_errf(err, errlen, "listener %zu: port %d is out of range", i, lc->port);
        return CF_EINVAL;
    }
    const char *host = strcmp(lc->host, "localhost") == 0 ? "127.0.0.1" : lc->host;
    if (uv_ip4_addr(host, lc->port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, lc->port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    cf_errf(err, errlen, "listener %zu: host '%s' is not an IP address", i, lc->host);
    return CF_EINVAL;
}

static const char *kind_name(enum cf_listener_kind k)
{
    switch (k) {
    case CF_LISTEN_PLAIN:
        return "http";
    case CF_LISTEN_TLS:
        return "https";
    case CF_LISTEN_TLS_CLIENT:
        return "https-client-cert";
    }
    return "?";
}

int cf_http_server_start(uv_loop_t *loop, const struct cf_http_server_config *cfg,
                         struct cf_http_server **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!loop || !cfg || !out || !cfg->handler || !cfg->listeners || cfg->n_listeners == 0) {
        cf_errf(err, errlen, "HTTP server: a loop, a handler and at least one listener are needed");
        return CF_EINVAL;
    }
    struct cf_http_server *s = cf_xcalloc(1, sizeof(*s));
    s->loop = loop;
    cf__http_limits_fill(&s->env.limits, &cfg->limits);
    s->env.handler = cfg->handler;
    s->env.body_limit = cfg->body_limit;
    s->env.arg = cfg->arg;
    s->env.retire = retire_req;
    s->env.retire_arg = s;
    s->n_listeners = cfg->n_listeners;
    s->listeners = cf_xcalloc(cfg->n_listeners, sizeof(*s->listeners));

    /* Everything that can be checked is checked before the first handle exists, so that a bad
     * configuration fails without anything left for the loop to close. */
    int rc = 0;
    for (size_t i = 0; i < s->n_listeners && rc == 0; i++) {
        const struct cf_listener_config *lc = &cfg->listeners[i];
        struct listener *l = &s->listeners[i];
        l->server = s;
        l->index = i;
        l->kind = lc->kind;
        if (lc->kind != CF_LISTEN_PLAIN && lc->kind != CF_LISTEN_TLS &&
            lc->kind != CF_LISTEN_TLS_CLIENT) {
            cf_errf(err, errlen, "listener %zu: unknown kind %d", i, (int)lc->kind);
            rc = CF_EINVAL;
            break;
        }
        rc = parse_addr(lc, i, &l->addr, err, errlen);
        if (rc)
            break;
        if (lc->kind == CF_LISTEN_PLAIN && !is_loopback(&l->addr)) {
            cf_errf(err, errlen,
                    "listener %zu: plain HTTP may listen only on a loopback address (127.0.0.0/8 "
                    "or ::1), not '%s': without TLS, requests and credentials would cross the "
                    "network in clear text; use a TLS listener",
                    i, lc->host);
            rc = CF_EINVAL;
            break;
        }
        if (lc->kind != CF_LISTEN_PLAIN) {
            l->files = (struct cf_listener_config){
                .kind = lc->kind,
                .cert_file = dup_or_null(lc->cert_file),
                .key_file = dup_or_null(lc->key_file),
                .ca_file = dup_or_null(lc->ca_file),
                .crl_file = dup_or_null(lc->crl_file),
            };
            l->ctx = cf__tls_ctx_new(&l->files, i, err, errlen);
            if (!l->ctx)
                rc = CF_EINVAL;
        }
    }
    if (rc) {
        free_listeners(s->listeners, s->n_listeners);
        free(s);
        return rc;
    }

    s->readbuf = cf_xmalloc(READ_BUF_SIZE);
    s->tlsbuf = cf_xmalloc(TLS_BUF_SIZE);
    uv_idle_init(loop, &s->reaper);
    s->reaper.data = s;
    s->has_reaper = true;
    s->handles++;
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener *l = &s->listeners[i];
        const struct cf_listener_config *lc = &cfg->listeners[i];
        uv_tcp_init(loop, &l->tcp);
        l->tcp.data = l;
        l->has_handle = true;
        s->handles++;
        int r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&l->addr, 0);
        if (r == 0)
            r = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
        if (r != 0) {
            cf_errf(err, errlen, "listener %zu: cannot listen on %s port %d: %s", i, lc->host,
                    lc->port, uv_strerror(r));
            /* Handles exist now: they are closed, and the server freed, as the loop runs. */
            cf_http_server_close(s);
            return CF_EIO;
        }
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) == 0)
            l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
        cf_log(CF_LOG_DEBUG, "http: listening listener=%zu kind=%s host=%s port=%d", i,
               kind_name(l->kind), lc->host, l->port);
    }
    *out = s;
    return 0;
}

int cf_http_listener_port(const struct cf_http_server *s, size_t index)
{
    if (!s || index >= s->n_listeners)
        return CF_EINVAL;
    return s->listeners[index].port;
}

int cf_http_server_reload_tls(struct cf_http_server *s, char *err, size_t errlen)
{
    if (!s || s->closing) {
        cf_errf(err, errlen, "HTTP server: not running");
        return CF_EINVAL;
    }
    /* Every context is built before any is swapped in: one file that does not load leaves every
     * listener as it was. The files are small; reading them on the loop thread is acceptable for
     * an operator's occasional signal. */
    SSL_CTX **fresh = cf_xcalloc(s->n_listeners, sizeof(*fresh));
    int rc = 0;
    for (size_t i = 0; i < s->n_listeners && rc == 0; i++) {
        struct listener *l = &s->listeners[i];
        if (l->kind == CF_LISTEN_PLAIN)
            continue;
        fresh[i] = cf__tls_ctx_new(&l->files, i, err, errlen);
        if (!fresh[i])
            rc = CF_EINVAL;
    }
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener *l = &s->listeners[i];
        if (rc) {
            SSL_CTX_free(fresh[i]);
            continue;
        }
        if (l->kind == CF_LISTEN_PLAIN)
            continue;
        /* Connections in progress hold their own reference to the old context. Sessions of the
         * old context do not resume on the new one (new ticket keys, new cache), so a client
         * whose certificate is now revoked cannot skip the new checks by resuming. */
        SSL_CTX_free(l->ctx);
        l->ctx = fresh[i];
    }
    free(fresh);
    return rc;
}

void cf_http_server_stop_accepting(struct cf_http_server *s)
{
    if (!s || s->closing)
        return;
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener *l = &s->listeners[i];
        if (l->has_handle) {
            l->has_handle = false;
            uv_close((uv_handle_t *)&l->tcp, listener_closed);
        }
    }
    for (struct conn *cn = s->conns; cn; cn = cn->next) {
        if (!cn->closing && !cn->finishing)
            cf__hconn_drain(&cn->core);
    }
}

void cf_http_server_close(struct cf_http_server *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener *l = &s->listeners[i];
        if (l->has_handle) {
            l->has_handle = false;
            uv_close((uv_handle_t *)&l->tcp, listener_closed);
        }
    }
    for (struct conn *cn = s->conns; cn; cn = cn->next)
        conn_close(cn);
    if (s->has_reaper) {
        s->has_reaper = false;
        uv_close((uv_handle_t *)&s->reaper, server_handle_closed);
    }
    while (s->retired) {
        struct cf__http_req *r = s->retired;
        s->retired = r->next;
        cf__http_req_free(r);
    }
    server_maybe_free(s);
}

void cf_http_server_stats(const struct cf_http_server *s, struct cf_http_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!s)
        return;
    const struct cf__http_counters *k = &s->env.counters;
    out->requests = k->requests;
    memcpy(out->responses_by_class, k->responses_by_class, sizeof(out->responses_by_class));
    out->open_connections = s->n_conns;
    out->tls_handshake_failures = k->tls_handshake_failures;
    uint64_t acc = 0;
    for (size_t i = 0; i < CF_ARRAY_LEN(out->latency_bucket_counts); i++) {
        acc += k->latency_buckets[i];
        out->latency_bucket_counts[i] = acc;
    }
    out->latency_sum_s = k->latency_sum_s;
}
