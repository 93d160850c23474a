/*
 * Tests of the HTTP client (engine/net/client.c) against real servers on 127.0.0.1, all on one
 * libuv loop with the client: certflow's own HTTP server (plain, TLS, TLS that requires a client
 * certificate, TLS with a certificate for another name) with a throwaway PKI made by the openssl
 * command line, and raw TCP listeners that answer with canned bytes, close at once, or never
 * answer. Each test runs the loop until what it waits for has happened or a deadline passed, and
 * ends with uv_loop_close() == 0, so a leaked handle fails it.
 *
 * `done` records what it saw (and whether it ran inside cf_httpc_send/cancel/close, which it
 * must not) into a `struct result`; the tests assert on those records after the loop ran.
 */
#define _XOPEN_SOURCE 700 /* posix_openpt() and friends */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "base/base.h"
#include "net/client.h"
#include "net/http.h"

#define KEY_PASSWORD "Tr0ub4dor-cf-sekret"
#define WRONG_PASSWORD "wrong-cf-sekret"

/* ====================================================================================== */
/* A throwaway PKI                                                                          */
/* ====================================================================================== */

static char pki[256];

static const char pki_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "ca() {\n"
    "  key $1.key\n"
    "  openssl req -x509 -new -key $1.key -out $1.pem -days 2 -subj \"$2\" \\\n"
    "    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "}\n"
    "leaf() {\n"
    "  key $1.key\n"
    "  openssl req -new -key $1.key -out $1.csr -subj \"$3\"\n"
    "  printf '%b' \"$4\" > $1.ext\n"
    "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem \\\n"
    "    -days 2 -extfile $1.ext\n"
    "}\n"
    "ca ca '/CN=certflow test CA'\n"
    "ca rogue '/CN=rogue CA'\n"
    "leaf server ca /CN=localhost "
    "'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n'\n"
    "leaf other ca /CN=other.example "
    "'subjectAltName=DNS:other.example\\nextendedKeyUsage=serverAuth\\n'\n"
    "leaf client ca /O=certflow/CN=test-client 'extendedKeyUsage=clientAuth\\n'\n"
    "leaf stranger rogue /O=certflow/CN=test-client 'extendedKeyUsage=clientAuth\\n'\n"
    "openssl pkey -in client.key -out client-enc.key -aes-256-cbc -passout pass:$2\n";

/* A path in the PKI folder. Tests keep several at once: enough buffers for all of them. */
static const char *P(const char *name)
{
    static char bufs[64][320];
    static int next;
    char *b = bufs[next++ % 64];
    snprintf(b, sizeof(bufs[0]), "%s/%s", pki, name);
    return b;
}

static int run(char *const argv[], struct cf_buf *out)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0 && out)
            cf_buf_append(out, buf, (size_t)n);
    }
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int setup_pki(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(pki, sizeof(pki), "/tmp/cf-httpc-pki-XXXXXX");
    if (!mkdtemp(pki))
        return -1;
    char *argv[] = {"sh", "-c", (char *)pki_script, "pki", pki, KEY_PASSWORD, NULL};
    struct cf_buf out;
    cf_buf_init(&out);
    int rc = run(argv, &out);
    if (rc != 0)
        fprintf(stderr, "test PKI failed (%d): %s\n", rc, out.data ? out.data : "");
    cf_buf_free(&out);
    return rc == 0 ? 0 : -1;
}

static int teardown_pki(void **state)
{
    (void)state;
    char *argv[] = {"rm", "-rf", pki, NULL};
    run(argv, NULL);
    return 0;
}

/* ====================================================================================== */
/* Raw TCP servers: a canned reply after the request's headers, then close; or silence      */
/* ====================================================================================== */

struct rconn;

struct raw {
    uv_tcp_t tcp;
    const char *reply; /* NULL: read everything, never answer; "": close without answering */
    size_t reply_len;
    int port;
    int accepted;
    int requests; /* request heads seen */
    struct rconn *conns;
    bool open;
};

struct rconn {
    uv_tcp_t tcp;
    uv_write_t w;
    struct raw *raw;
    struct rconn *prev, *next;
    char head[8192];
    size_t len;
    char rbuf[4096];
    bool replied;
    bool closing;
};

static void rconn_closed(uv_handle_t *h)
{
    struct rconn *k = h->data;
    if (k->prev)
        k->prev->next = k->next;
    else
        k->raw->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    free(k);
}

static void rconn_close(struct rconn *k)
{
    if (k->closing)
        return;
    k->closing = true;
    uv_close((uv_handle_t *)&k->tcp, rconn_closed);
}

static void rconn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct rconn *k = h->data;
    *buf = uv_buf_init(k->rbuf, sizeof(k->rbuf));
}

static void rconn_written(uv_write_t *w, int status)
{
    (void)status;
    rconn_close(w->data);
}

static bool has_head_end(const char *p, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(p + i, "\r\n\r\n", 4) == 0)
            return true;
    }
    return false;
}

static void rconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rconn *k = s->data;
    if (nread < 0) {
        rconn_close(k);
        return;
    }
    size_t n = (size_t)nread;
    if (n > sizeof(k->head) - k->len)
        n = sizeof(k->head) - k->len;
    memcpy(k->head + k->len, buf->base, n);
    k->len += n;
    if (k->replied || !has_head_end(k->head, k->len))
        return;
    k->replied = true;
    k->raw->requests++;
    if (!k->raw->reply)
        return;
    if (k->raw->reply_len == 0) {
        rconn_close(k);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)k->raw->reply, (unsigned)k->raw->reply_len);
    k->w.data = k;
    if (uv_write(&k->w, (uv_stream_t *)&k->tcp, &b, 1, rconn_written) != 0)
        rconn_close(k);
}

static void raw_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct raw *r = server->data;
    struct rconn *k = cf_xcalloc(1, sizeof(*k));
    k->raw = r;
    uv_tcp_init(server->loop, &k->tcp);
    k->tcp.data = k;
    k->next = r->conns;
    if (r->conns)
        r->conns->prev = k;
    r->conns = k;
    if (uv_accept(server, (uv_stream_t *)&k->tcp) != 0) {
        rconn_close(k);
        return;
    }
    r->accepted++;
    uv_read_start((uv_stream_t *)&k->tcp, rconn_alloc, rconn_read);
}

static void raw_start(uv_loop_t *loop, struct raw *r, const char *reply, size_t reply_len)
{
    memset(r, 0, sizeof(*r));
    r->reply = reply;
    r->reply_len = reply_len;
    assert_int_equal(uv_tcp_init(loop, &r->tcp), 0);
    r->tcp.data = r;
    r->open = true;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&r->tcp, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->tcp, 64, raw_connection), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&r->tcp, (struct sockaddr *)&ss, &len);
    r->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void raw_stop(struct raw *r)
{
    if (!r->open)
        return;
    r->open = false;
    for (struct rconn *k = r->conns; k; k = k->next)
        rconn_close(k);
    uv_close((uv_handle_t *)&r->tcp, NULL);
}

/* A port where nothing listens: bound, never listened on, closed. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ====================================================================================== */
/* The environment of one test: loop, certflow's server, client, what `done` saw             */
/* ====================================================================================== */

enum { L_PLAIN, L_TLS, L_TLS_CLIENT, L_TLS_OTHER, N_LISTENERS };

struct result {
    int calls;
    int seq;
    bool reentered; /* ran inside cf_httpc_send/cancel/close */
    bool nul_ok;    /* body[body_len] == '\0' */
    enum cf_httpc_fail fail;
    bool sent;
    long status;
    char error[512];
    bool has_error;
    char content_type[128];
    bool has_content_type;
    char x_method[32];
    char x_echo[128];
    char x_expect[64];
    char x_peer[64];
    char headers[2048]; /* "name=value\n" for each header, in order */
    size_t n_headers;
    uint8_t body[8192];
    size_t body_len;
    uint64_t elapsed_ms;
    /* Actions taken inside `done`. */
    struct cf_httpc_xfer *cancel_in_done;
    bool close_in_done;
    bool send_in_done;
    int send_in_done_rc;
};

#define POOL_SIZE 256

struct env {
    uv_loop_t loop;
    uv_timer_t guard;
    struct cf_http_server *server;
    int ports[N_LISTENERS];
    struct cf_httpc *client;
    bool in_api;
    int seq;
    int done_calls;
    bool closed;
    int closed_seq;
    struct cf_http_request *held[16];
    int n_held;
    int requests;
    char peers[256][64]; /* distinct peer addresses seen by the handler */
    int n_peers;
    struct raw raws[3];
    int n_raws;
    /* Results live here, not on a test's stack: after a failed assertion the test is gone
     * but its transfers still end (canceled) in env_teardown. */
    struct result *pool;
    size_t n_pool;
    struct cf_buf logs;
};

static struct env E;

static struct result *res(void)
{
    assert_true(E.n_pool < POOL_SIZE);
    return &E.pool[E.n_pool++];
}

static void on_closed(void *arg)
{
    struct env *e = arg;
    e->closed = true;
    e->client = NULL; /* freed now */
    e->closed_seq = ++e->seq;
}

static void on_done(void *arg, const struct cf_httpc_resp *resp)
{
    struct result *r = arg;
    r->calls++;
    r->seq = ++E.seq;
    E.done_calls++;
    r->reentered = r->reentered || E.in_api;
    r->fail = resp->fail;
    r->sent = resp->sent;
    r->status = resp->status;
    r->elapsed_ms = resp->elapsed_ms;
    r->has_error = resp->error != NULL;
    cf_strlcpy(r->error, resp->error ? resp->error : "", sizeof(r->error));
    r->has_content_type = resp->content_type != NULL;
    cf_strlcpy(r->content_type, resp->content_type ? resp->content_type : "",
               sizeof(r->content_type));
    /* Lower-case names: the lookup must ignore case. */
    const char *v = cf_httpc_resp_header(resp, "x-method");
    cf_strlcpy(r->x_method, v ? v : "", sizeof(r->x_method));
    v = cf_httpc_resp_header(resp, "x-echo-foo");
    cf_strlcpy(r->x_echo, v ? v : "", sizeof(r->x_echo));
    v = cf_httpc_resp_header(resp, "X-ECHO-EXPECT");
    cf_strlcpy(r->x_expect, v ? v : "", sizeof(r->x_expect));
    v = cf_httpc_resp_header(resp, "x-peer");
    cf_strlcpy(r->x_peer, v ? v : "", sizeof(r->x_peer));
    r->headers[0] = '\0';
    size_t off = 0;
    for (size_t i = 0; i < resp->n_headers; i++) {
        int n = snprintf(r->headers + off, sizeof(r->headers) - off, "%s=%s\n",
                         resp->headers[i].name, resp->headers[i].value);
        if (n < 0 || (size_t)n >= sizeof(r->headers) - off)
            break;
        off += (size_t)n;
    }
    r->n_headers = resp->n_headers;
    r->nul_ok = resp->body != NULL && resp->body[resp->body_len] == '\0';
    r->body_len = resp->body_len;
    memcpy(r->body, resp->body, resp->body_len < sizeof(r->body) ? resp->body_len : 0);
    if (r->cancel_in_done)
        cf_httpc_cancel(r->cancel_in_done);
    if (r->close_in_done)
        cf_httpc_close(E.client, on_closed, &E);
    if (r->send_in_done) {
        struct cf_httpc_req req = {.method = "GET", .url = "http://127.0.0.1:1/"};
        r->send_in_done_rc = cf_httpc_send(E.client, &req, on_done, res(), NULL);
    }
}

static void record_peer(const char *peer)
{
    for (int i = 0; i < E.n_peers; i++) {
        if (strcmp(E.peers[i], peer) == 0)
            return;
    }
    if (E.n_peers < (int)CF_ARRAY_LEN(E.peers))
        cf_strlcpy(E.peers[E.n_peers++], peer, sizeof(E.peers[0]));
}

static void handler(void *arg, struct cf_http_request *req)
{
    (void)arg;
    E.requests++;
    record_peer(req->peer_addr);
    char q[32] = "";
    if (strcmp(req->path, "/echo") == 0) {
        const char *ct = cf_http_header(req, "Content-Type");
        const char *foo = cf_http_header(req, "X-Foo");
        const char *expect = cf_http_header(req, "Expect");
        const char *hdr[] = {"X-Method",      req->method,     "X-Echo-Foo",
                             foo ? foo : "-", "X-Echo-Expect", expect ? expect : "-",
                             "X-Peer",        req->peer_addr,  NULL};
        cf_http_respond(req, 200, ct ? ct : "application/octet-stream", hdr, req->body,
                        req->body_len);
    } else if (strcmp(req->path, "/status") == 0) {
        cf_http_query_param(req, "code", q, sizeof(q));
        char body[64];
        int n = snprintf(body, sizeof(body), "status %s", q);
        cf_http_respond(req, (int)strtol(q, NULL, 10), "text/plain", NULL, body, (size_t)n);
    } else if (strcmp(req->path, "/big") == 0) {
        cf_http_query_param(req, "n", q, sizeof(q));
        size_t n = (size_t)strtoul(q, NULL, 10);
        char *body = cf_xmalloc(n + 1);
        memset(body, 'b', n);
        cf_http_respond(req, 200, "application/octet-stream", NULL, body, n);
        free(body);
    } else if (strcmp(req->path, "/hold") == 0) {
        if (E.n_held < (int)CF_ARRAY_LEN(E.held))
            E.held[E.n_held++] = req;
        else
            cf_http_respond(req, 503, "text/plain", NULL, "full", 4);
    } else if (strcmp(req->path, "/whoami") == 0) {
        char subject[256] = "none";
        if (req->peer_cert) {
            BIO *b = BIO_new(BIO_s_mem());
            X509_NAME_print_ex(b, X509_get_subject_name(req->peer_cert), 0, XN_FLAG_RFC2253);
            int n = BIO_read(b, subject, sizeof(subject) - 1);
            subject[n > 0 ? n : 0] = '\0';
            BIO_free(b);
        }
        cf_http_respond(req, 200, "text/plain", NULL, subject, strlen(subject));
    } else {
        cf_http_respond(req, 404, "text/plain", NULL, "not found\n", 10);
    }
}

static size_t body_limit(void *arg, const char *method, const char *path)
{
    (void)arg;
    (void)method;
    return strcmp(path, "/echo") == 0 ? 4 * 1024 * 1024 : 0;
}

static void log_sink(enum cf_log_level level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    cf_buf_puts(&E.logs, line);
    cf_buf_putc(&E.logs, '\n');
}

static int env_setup(void **state)
{
    (void)state;
    memset(&E, 0, sizeof(E));
    E.pool = cf_xcalloc(POOL_SIZE, sizeof(*E.pool));
    cf_buf_init(&E.logs);
    cf_log_set_sink(log_sink, NULL);
    cf_log_set_level(CF_LOG_DEBUG);
    if (uv_loop_init(&E.loop) != 0)
        return -1;
    uv_timer_init(&E.loop, &E.guard);
    struct cf_listener_config ls[N_LISTENERS] = {
        [L_PLAIN] = {.kind = CF_LISTEN_PLAIN, .host = "127.0.0.1"},
        [L_TLS] = {.kind = CF_LISTEN_TLS,
                   .host = "127.0.0.1",
                   .cert_file = P("server.pem"),
                   .key_file = P("server.key")},
        [L_TLS_CLIENT] = {.kind = CF_LISTEN_TLS_CLIENT,
                          .host = "127.0.0.1",
                          .cert_file = P("server.pem"),
                          .key_file = P("server.key"),
                          .ca_file = P("ca.pem")},
        [L_TLS_OTHER] = {.kind = CF_LISTEN_TLS,
                         .host = "127.0.0.1",
                         .cert_file = P("other.pem"),
                         .key_file = P("other.key")},
    };
    struct cf_http_server_config cfg = {
        .listeners = ls,
        .n_listeners = N_LISTENERS,
        .handler = handler,
        .body_limit = body_limit,
    };
    char err[512] = "";
    int rc = cf_http_server_start(&E.loop, &cfg, &E.server, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "server start: %s (%s)\n", err, cf_err_name(rc));
        return -1;
    }
    for (int i = 0; i < N_LISTENERS; i++)
        E.ports[i] = cf_http_listener_port(E.server, (size_t)i);
    rc = cf_httpc_new(&E.loop, &E.client, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "client: %s (%s)\n", err, cf_err_name(rc));
        return -1;
    }
    return 0;
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until pred() holds or `ms` passed; the guard timer wakes the loop often. */
static bool run_until(bool (*pred)(void *), void *arg, uint64_t ms)
{
    uint64_t end = cf_mono_ms() + ms;
    uv_timer_start(&E.guard, on_guard, 5, 5);
    while (!pred(arg) && cf_mono_ms() < end)
        uv_run(&E.loop, UV_RUN_ONCE);
    uv_timer_stop(&E.guard);
    return pred(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void run_for(uint64_t ms)
{
    run_until(never, NULL, ms);
}

static bool done_at_least(void *arg)
{
    return E.done_calls >= *(int *)arg;
}

static void wait_done(int n, uint64_t ms)
{
    if (!run_until(done_at_least, &n, ms))
        fail_msg("only %d of %d transfers done after %llu ms", E.done_calls, n,
                 (unsigned long long)ms);
}

static bool is_closed(void *arg)
{
    (void)arg;
    return E.closed;
}

static bool held_at_least(void *arg)
{
    return E.n_held >= *(int *)arg;
}

static bool raw_requests_at_least(void *arg)
{
    struct raw *r = arg;
    return r->requests >= 1;
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "open handle: %s%s\n", uv_handle_type_name(h->type),
            uv_is_closing(h) ? " (closing)" : "");
}

static int env_teardown(void **state)
{
    (void)state;
    int failed = 0;
    if (E.client) {
        cf_httpc_close(E.client, on_closed, &E); /* a no-op when already closing */
        if (!run_until(is_closed, NULL, 5000)) {
            fprintf(stderr, "client did not close\n");
            failed = -1;
        }
    }
    for (int i = 0; i < E.n_held; i++)
        cf_http_respond(E.held[i], 200, "text/plain", NULL, "late", 4);
    E.n_held = 0;
    for (int i = 0; i < E.n_raws; i++)
        raw_stop(&E.raws[i]);
    cf_http_server_close(E.server);
    uv_close((uv_handle_t *)&E.guard, NULL);
    uint64_t end = cf_mono_ms() + 10000;
    while (uv_run(&E.loop, UV_RUN_ONCE) != 0 && cf_mono_ms() < end)
        ;
    if (uv_loop_close(&E.loop) != 0) {
        uv_walk(&E.loop, walk_cb, NULL);
        fprintf(stderr, "uv_loop_close failed: handles leaked\n");
        failed = -1;
        /* Let what remains close so the next test starts clean. */
        uv_run(&E.loop, UV_RUN_DEFAULT);
        uv_loop_close(&E.loop);
    }
    cf_log_set_sink(NULL, NULL);
    cf_log_set_level(CF_LOG_INFO);
    cf_buf_free(&E.logs);
    free(E.pool);
    return failed;
}

static struct raw *raw_new(const char *reply, size_t reply_len)
{
    assert_true(E.n_raws < (int)CF_ARRAY_LEN(E.raws));
    struct raw *r = &E.raws[E.n_raws++];
    raw_start(&E.loop, r, reply, reply_len);
    return r;
}

static const char *url(int port, bool tls, const char *path)
{
    static char bufs[32][256];
    static int next;
    char *b = bufs[next++ % 32];
    snprintf(b, sizeof(bufs[0]), "%s://127.0.0.1:%d%s", tls ? "https" : "http", port, path);
    return b;
}

static struct cf_httpc_xfer *send_req(const struct cf_httpc_req *req, struct result *r)
{
    struct cf_httpc_xfer *x = NULL;
    E.in_api = true;
    int rc = cf_httpc_send(E.client, req, on_done, r, &x);
    E.in_api = false;
    if (rc != 0)
        fail_msg("cf_httpc_send: %s", cf_err_name(rc));
    assert_non_null(x);
    assert_int_equal(r->calls, 0);
    return x;
}

static void cancel(struct cf_httpc_xfer *x)
{
    E.in_api = true;
    cf_httpc_cancel(x);
    E.in_api = false;
}

static void close_client(void)
{
    E.in_api = true;
    cf_httpc_close(E.client, on_closed, &E);
    E.in_api = false;
}

static void assert_once(const struct result *r)
{
    assert_int_equal(r->calls, 1);
    assert_false(r->reentered);
}

static void assert_ok(const struct result *r, long status)
{
    assert_once(r);
    if (r->fail != CF_HTTPC_OK)
        fail_msg("fail=%d error=%s", (int)r->fail, r->error);
    assert_int_equal(r->status, status);
    assert_true(r->sent);
    assert_false(r->has_error);
    assert_true(r->nul_ok);
}

static void assert_failed(const struct result *r, enum cf_httpc_fail fail, bool sent,
                          const char *hostport)
{
    assert_once(r);
    if (r->fail != fail)
        fail_msg("fail=%d, expected %d; error=%s", (int)r->fail, (int)fail, r->error);
    assert_int_equal(r->sent, sent);
    assert_true(r->has_error);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->body_len, 0);
    assert_int_equal(r->n_headers, 0);
    assert_false(r->has_content_type);
    assert_true(r->nul_ok);
    if (hostport && !strstr(r->error, hostport))
        fail_msg("error does not name %s: %s", hostport, r->error);
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    }
    return false;
}

static const char *hostport(int port)
{
    static char bufs[4][64];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "127.0.0.1:%d", port);
    return b;
}

/* ====================================================================================== */
/* Tests                                                                                    */
/* ====================================================================================== */

static void test_get_post_put_delete_echo(void **state)
{
    (void)state;
    struct result *get = res(), *post = res(), *put = res(), *del = res(), *large = res();
    const struct cf_httpc_header gh[] = {{"X-Foo", "bar baz"}, {"Accept", "*/*"}};
    struct cf_httpc_req req = {.method = "GET",
                               .url = url(E.ports[L_PLAIN], false, "/echo"),
                               .headers = gh,
                               .n_headers = 2};
    send_req(&req, get);

    uint8_t body[3000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7); /* binary, with NUL bytes */
    const struct cf_httpc_header ph[] = {{"Content-Type", "application/pkix-cert"},
                                         {"X-Foo", "posted"}};
    req = (struct cf_httpc_req){.method = "POST",
                                .url = url(E.ports[L_PLAIN], false, "/echo"),
                                .headers = ph,
                                .n_headers = 2,
                                .body = body,
                                .body_len = sizeof(body)};
    send_req(&req, post);
    /* The body was copied: scribbling on ours after send changes nothing. */
    uint8_t expect[3000];
    memcpy(expect, body, sizeof(body));
    memset(body, 'X', sizeof(body));

    req = (struct cf_httpc_req){.method = "PUT",
                                .url = url(E.ports[L_PLAIN], false, "/echo"),
                                .body = (const uint8_t *)"put-body",
                                .body_len = 8};
    send_req(&req, put);
    req = (struct cf_httpc_req){.method = "DELETE", .url = url(E.ports[L_PLAIN], false, "/echo")};
    send_req(&req, del);
    /* A large body goes without a 100-continue round trip, which curl would otherwise ask for
     * and wait up to a second for from servers that do not answer it. */
    size_t large_len = 1536 * 1024;
    uint8_t *large_body = cf_xmalloc(large_len);
    memset(large_body, 'L', large_len);
    req = (struct cf_httpc_req){.method = "POST",
                                .url = url(E.ports[L_PLAIN], false, "/echo"),
                                .body = large_body,
                                .body_len = large_len,
                                .max_response = 2 * 1024 * 1024};
    send_req(&req, large);
    free(large_body);
    wait_done(5, 5000);

    assert_ok(get, 200);
    assert_string_equal(get->x_method, "GET");
    assert_string_equal(get->x_echo, "bar baz");
    assert_int_equal(get->body_len, 0);
    assert_string_equal(get->content_type, "application/octet-stream");
    /* Headers come as received, with the server's spelling. */
    assert_non_null(strstr(get->headers, "X-Method=GET\n"));
    assert_non_null(strstr(get->headers, "Content-Length=0\n"));
    assert_true(get->elapsed_ms < 5000);

    assert_ok(post, 200);
    assert_string_equal(post->x_method, "POST");
    assert_string_equal(post->x_echo, "posted");
    assert_string_equal(post->content_type, "application/pkix-cert");
    assert_int_equal(post->body_len, sizeof(expect));
    assert_memory_equal(post->body, expect, sizeof(expect));

    assert_ok(put, 200);
    assert_string_equal(put->x_method, "PUT");
    assert_int_equal(put->body_len, 8);
    assert_memory_equal(put->body, "put-body", 8);
    /* No type asked for: curl's default form type must not be invented. */
    assert_string_equal(put->content_type, "application/octet-stream");

    assert_ok(del, 200);
    assert_string_equal(del->x_method, "DELETE");
    assert_string_equal(del->x_echo, "-");

    assert_ok(large, 200);
    assert_int_equal(large->body_len, large_len);
    assert_string_equal(large->x_expect, "-");
    assert_string_equal(get->x_expect, "-");
}

static void test_error_statuses_are_answers(void **state)
{
    (void)state;
    struct result *r404 = res(), *r500 = res(), *rnone = res();
    struct cf_httpc_req req = {.method = "GET",
                               .url = url(E.ports[L_PLAIN], false, "/status?code=404")};
    send_req(&req, r404);
    req.url = url(E.ports[L_PLAIN], false, "/status?code=500");
    send_req(&req, r500);
    req.url = url(E.ports[L_PLAIN], false, "/nowhere");
    send_req(&req, rnone);
    wait_done(3, 5000);
    assert_ok(r404, 404);
    assert_int_equal(r404->body_len, 10);
    assert_memory_equal(r404->body, "status 404", 10);
    assert_string_equal(r404->content_type, "text/plain");
    assert_ok(r500, 500);
    assert_memory_equal(r500->body, "status 500", 10);
    assert_ok(rnone, 404);
}

static void test_response_headers(void **state)
{
    (void)state;
    /* An interim 100 response first: its headers are not the answer's. Then duplicates (the
     * first wins), odd spacing and case, a folded line, and a body delimited by close. */
    static const char reply[] = "HTTP/1.1 100 Continue\r\n"
                                "X-Interim: yes\r\n"
                                "\r\n"
                                "HTTP/1.1 201 Created\r\n"
                                "x-method:   raw  \r\n"
                                "X-Dup: first\r\n"
                                "X-Dup: second\r\n"
                                "CONTENT-TYPE: text/x-raw\r\n"
                                "X-Fold: a\r\n"
                                "  b\r\n"
                                "Connection: close\r\n"
                                "\r\n"
                                "raw body";
    struct raw *r = raw_new(reply, sizeof(reply) - 1);
    struct result *got = res();
    struct cf_httpc_req req = {.method = "GET", .url = url(r->port, false, "/")};
    send_req(&req, got);
    wait_done(1, 5000);
    assert_ok(got, 201);
    assert_string_equal(got->x_method, "raw");
    assert_string_equal(got->content_type, "text/x-raw");
    assert_null(strstr(got->headers, "X-Interim"));
    assert_string_equal(got->headers, "x-method=raw\n"
                                      "X-Dup=first\n"
                                      "X-Dup=second\n"
                                      "CONTENT-TYPE=text/x-raw\n"
                                      "X-Fold=a b\n"
                                      "Connection=close\n");
    assert_int_equal(got->n_headers, 6);
    assert_int_equal(got->body_len, 8);
    assert_memory_equal(got->body, "raw body", 8);

    /* The lookup itself, on a response built by hand. */
    const struct cf_httpc_header hs[] = {{"Location", "/a"}, {"location", "/b"}};
    struct cf_httpc_resp resp = {.headers = hs, .n_headers = 2};
    assert_string_equal(cf_httpc_resp_header(&resp, "LOCATION"), "/a");
    assert_null(cf_httpc_resp_header(&resp, "Loc"));
    assert_null(cf_httpc_resp_header(NULL, "Location"));
}

static void test_connection_refused(void **state)
{
    (void)state;
    int port = closed_port();
    struct result *r = res();
    struct cf_httpc_req req = {.method = "POST",
                               .url = url(port, false, "/x"),
                               .body = (const uint8_t *)"secret-body",
                               .body_len = 11};
    send_req(&req, r);
    wait_done(1, 5000);
    assert_failed(r, CF_HTTPC_CONNECT, false, hostport(port));
    assert_true(contains_ci(r->error, "refused"));
    assert_null(strstr(r->error, "secret-body"));
}

static void test_resolve_failure(void **state)
{
    (void)state;
    struct result *r = res();
    struct cf_httpc_req req = {
        .method = "GET", .url = "http://cf-test.invalid:8080/", .timeout_ms = 3000};
    send_req(&req, r);
    wait_done(1, 6000);
    /* .invalid never resolves (RFC 6761), but a host whose name server does not answer can
     * only say so after the timeout: that says nothing about the client. */
    if (r->fail == CF_HTTPC_TIMEOUT && strstr(r->error, "esolv")) {
        fprintf(stderr, "name server too slow to test resolution failures: %s\n", r->error);
        skip();
    }
    assert_failed(r, CF_HTTPC_RESOLVE, false, "cf-test.invalid:8080");
}

static void test_silent_server_times_out(void **state)
{
    (void)state;
    struct raw *silent = raw_new(NULL, 0);
    struct result *r = res();
    struct cf_httpc_req req = {
        .method = "GET", .url = url(silent->port, false, "/"), .timeout_ms = 300};
    uint64_t t0 = cf_mono_ms();
    send_req(&req, r);
    wait_done(1, 5000);
    uint64_t took = cf_mono_ms() - t0;
    assert_failed(r, CF_HTTPC_TIMEOUT, true, hostport(silent->port));
    assert_int_equal(silent->requests, 1);
    assert_true(took >= 280 && took < 2000);
    assert_true(r->elapsed_ms >= 280 && r->elapsed_ms < 2000);
}

static void test_broken_and_bad_replies(void **state)
{
    (void)state;
    struct raw *hangup = raw_new("", 0);
    struct raw *garbage = raw_new("garbage\r\n\r\n", 11);
    struct result *r1 = res(), *r2 = res();
    struct cf_httpc_req req = {.method = "GET", .url = url(hangup->port, false, "/")};
    send_req(&req, r1);
    req.url = url(garbage->port, false, "/");
    send_req(&req, r2);
    wait_done(2, 5000);
    assert_failed(r1, CF_HTTPC_SEND_RECV, true, hostport(hangup->port));
    assert_failed(r2, CF_HTTPC_PROTOCOL, true, hostport(garbage->port));
}

static void test_https_trust(void **state)
{
    (void)state;
    struct cf_httpc_tls good = {.ca_file = P("ca.pem")};
    struct cf_httpc_tls rogue = {.ca_file = P("rogue.pem")};
    struct cf_httpc_tls missing = {.ca_file = P("no-such-ca.pem")};
    struct result *ok = res(), *bad_ca = res(), *sys_store = res(), *other = res(), *nofile = res();
    const struct cf_httpc_header h[] = {{"X-Foo", "over tls"}};
    struct cf_httpc_req req = {.method = "POST",
                               .url = url(E.ports[L_TLS], true, "/echo"),
                               .headers = h,
                               .n_headers = 1,
                               .body = (const uint8_t *)"tls body",
                               .body_len = 8,
                               .tls = &good};
    send_req(&req, ok);
    req.tls = &rogue;
    send_req(&req, bad_ca);
    req.tls = NULL; /* the system store does not know the test CA */
    send_req(&req, sys_store);
    req.tls = &missing;
    send_req(&req, nofile);
    /* Trusted, but issued for another name. */
    req.url = url(E.ports[L_TLS_OTHER], true, "/echo");
    req.tls = &good;
    send_req(&req, other);
    wait_done(5, 5000);

    assert_ok(ok, 200);
    assert_string_equal(ok->x_echo, "over tls");
    assert_memory_equal(ok->body, "tls body", 8);
    assert_failed(bad_ca, CF_HTTPC_TLS, false, hostport(E.ports[L_TLS]));
    assert_non_null(strstr(bad_ca->error, "certificate"));
    assert_failed(sys_store, CF_HTTPC_TLS, false, hostport(E.ports[L_TLS]));
    assert_failed(other, CF_HTTPC_TLS, false, hostport(E.ports[L_TLS_OTHER]));
    assert_failed(nofile, CF_HTTPC_LOCAL, false, hostport(E.ports[L_TLS]));
}

static void test_client_certificates(void **state)
{
    (void)state;
    struct cf_httpc_tls none = {.ca_file = P("ca.pem")};
    struct cf_httpc_tls plain = {
        .ca_file = P("ca.pem"), .cert_file = P("client.pem"), .key_file = P("client.key")};
    struct cf_httpc_tls enc = {.ca_file = P("ca.pem"),
                               .cert_file = P("client.pem"),
                               .key_file = P("client-enc.key"),
                               .key_password = KEY_PASSWORD};
    struct cf_httpc_tls wrong = enc;
    wrong.key_password = WRONG_PASSWORD;
    struct cf_httpc_tls nopw = enc;
    nopw.key_password = NULL;
    struct cf_httpc_tls stranger = {
        .ca_file = P("ca.pem"), .cert_file = P("stranger.pem"), .key_file = P("stranger.key")};
    struct result *r_none = res(), *r_plain = res(), *r_enc = res(), *r_wrong = res(),
                  *r_nopw = res(), *r_stranger = res();
    struct cf_httpc_req req = {
        .method = "GET", .url = url(E.ports[L_TLS_CLIENT], true, "/whoami"), .timeout_ms = 5000};
    req.tls = &none;
    send_req(&req, r_none);
    req.tls = &plain;
    send_req(&req, r_plain);
    req.tls = &enc;
    send_req(&req, r_enc);
    req.tls = &wrong;
    send_req(&req, r_wrong);
    /* No password for an encrypted key: a failure, not a prompt on the terminal. */
    req.tls = &nopw;
    send_req(&req, r_nopw);
    /* A certificate from a CA the server does not trust. */
    req.tls = &stranger;
    send_req(&req, r_stranger);
    wait_done(6, 8000);

    /* Refused by the server: with TLS 1.3 the client hears of it only after it may have
     * written the request, hence sent == true. */
    assert_failed(r_none, CF_HTTPC_TLS, true, hostport(E.ports[L_TLS_CLIENT]));
    assert_non_null(strstr(r_none->error, "alert"));
    assert_failed(r_stranger, CF_HTTPC_TLS, true, hostport(E.ports[L_TLS_CLIENT]));

    assert_ok(r_plain, 200);
    assert_int_equal(r_plain->body_len, strlen("CN=test-client,O=certflow"));
    assert_memory_equal(r_plain->body, "CN=test-client,O=certflow", r_plain->body_len);
    assert_ok(r_enc, 200);
    assert_memory_equal(r_enc->body, "CN=test-client,O=certflow", r_enc->body_len);

    assert_failed(r_wrong, CF_HTTPC_LOCAL, false, hostport(E.ports[L_TLS_CLIENT]));
    assert_failed(r_nopw, CF_HTTPC_LOCAL, false, hostport(E.ports[L_TLS_CLIENT]));
    const struct result *all[] = {r_none, r_plain, r_enc, r_wrong, r_nopw, r_stranger};
    for (size_t i = 0; i < CF_ARRAY_LEN(all); i++) {
        assert_null(strstr(all[i]->error, KEY_PASSWORD));
        assert_null(strstr(all[i]->error, WRONG_PASSWORD));
    }
    const char *logs = E.logs.data ? E.logs.data : "";
    assert_null(strstr(logs, KEY_PASSWORD));
    assert_null(strstr(logs, WRONG_PASSWORD));
}

/* Run in a terminal, OpenSSL would ask for the pass phrase of an encrypted key on /dev/tty and
 * block the loop until someone typed it. A child process with a terminal of its own (a pty)
 * sends a request with an encrypted key and no password; it must end at once with LOCAL. */
static void test_no_password_prompt_on_a_terminal(void **state)
{
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) {
        fprintf(stderr, "no pseudo-terminals here: %s\n", strerror(errno));
        skip();
    }
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    char slave[128];
    cf_strlcpy(slave, ptsname(master), sizeof(slave));
    const char *u = url(E.ports[L_TLS_CLIENT], true, "/whoami");
    struct cf_httpc_tls nopw = {
        .ca_file = P("ca.pem"), .cert_file = P("client.pem"), .key_file = P("client-enc.key")};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A session leader that opens a terminal makes it its controlling terminal. */
        setsid();
        int tty = open(slave, O_RDWR);
        if (tty < 0)
            _exit(3);
        dup2(tty, 0);
        uv_loop_t loop;
        struct cf_httpc *c = NULL;
        if (uv_loop_init(&loop) != 0 || cf_httpc_new(&loop, &c, NULL, 0) != 0)
            _exit(3);
        struct result *r = res();
        struct cf_httpc_req req = {.method = "GET", .url = u, .tls = &nopw, .timeout_ms = 3000};
        if (cf_httpc_send(c, &req, on_done, r, NULL) != 0)
            _exit(3);
        while (r->calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
            ;
        _exit(r->calls == 1 && r->fail == CF_HTTPC_LOCAL ? 0 : 2);
    }
    int st = 0;
    pid_t got = 0;
    for (int i = 0; i < 500 && (got = waitpid(pid, &st, WNOHANG)) == 0; i++)
        run_for(10);
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        char prompt[256] = "";
        ssize_t n = read(master, prompt, sizeof(prompt) - 1);
        prompt[n > 0 ? n : 0] = '\0';
        close(master);
        fail_msg("the client waited for a password on the terminal: \"%s\"", prompt);
    }
    close(master);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_max_response(void **state)
{
    (void)state;
    /* Over the limit by Content-Length, at the limit, and without a Content-Length (the body
     * runs until the server closes), where only counting the bytes can stop it. */
    static char unsized[64 + 10000];
    int n = snprintf(unsized, sizeof(unsized), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    memset(unsized + n, 'u', 10000);
    struct raw *r = raw_new(unsized, (size_t)n + 10000);
    /* A Content-Length over the limit fails before the body: this one never comes whole. */
    static const char announced[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc";
    struct raw *big = raw_new(announced, sizeof(announced) - 1);

    struct result *over = res(), *at = res(), *unsized_over = res(), *unsized_ok = res(),
                  *early = res();
    struct cf_httpc_req req = {
        .method = "GET", .url = url(E.ports[L_PLAIN], false, "/big?n=5000"), .max_response = 4999};
    send_req(&req, over);
    req.max_response = 5000;
    send_req(&req, at);
    req.url = url(r->port, false, "/");
    req.max_response = 4096;
    send_req(&req, unsized_over);
    req.max_response = 10000;
    send_req(&req, unsized_ok);
    req.url = url(big->port, false, "/");
    req.max_response = 4096;
    send_req(&req, early);
    wait_done(5, 5000);

    assert_failed(over, CF_HTTPC_TOO_LARGE, true, hostport(E.ports[L_PLAIN]));
    assert_non_null(strstr(over->error, "4999"));
    assert_ok(at, 200);
    assert_int_equal(at->body_len, 5000);
    assert_failed(unsized_over, CF_HTTPC_TOO_LARGE, true, hostport(r->port));
    assert_ok(unsized_ok, 200);
    assert_int_equal(unsized_ok->body_len, 10000);
    assert_false(unsized_ok->has_content_type);
    assert_failed(early, CF_HTTPC_TOO_LARGE, true, hostport(big->port));
}

static void test_cancel(void **state)
{
    (void)state;
    struct result *now = res(), *held = res(), *victim = res(), *killer = res(), *after = res();
    /* Canceled before the loop ran: nothing was sent. */
    struct cf_httpc_req req = {.method = "POST",
                               .url = url(E.ports[L_PLAIN], false, "/echo"),
                               .body = (const uint8_t *)"x",
                               .body_len = 1};
    struct cf_httpc_xfer *x = send_req(&req, now);
    cancel(x);
    assert_int_equal(now->calls, 0);

    /* Canceled while the server holds the request. */
    req = (struct cf_httpc_req){.method = "GET", .url = url(E.ports[L_PLAIN], false, "/hold")};
    x = send_req(&req, held);
    int one = 1;
    assert_true(run_until(held_at_least, &one, 5000));
    cancel(x);
    assert_int_equal(held->calls, 0);

    /* Canceled from another transfer's `done`. */
    struct cf_httpc_xfer *v = send_req(&req, victim);
    int two = 2;
    assert_true(run_until(held_at_least, &two, 5000));
    killer->cancel_in_done = v;
    req.url = url(E.ports[L_PLAIN], false, "/echo");
    send_req(&req, killer);
    wait_done(4, 5000);
    run_for(100); /* a second `done` would come now */

    assert_failed(now, CF_HTTPC_CANCELED, false, hostport(E.ports[L_PLAIN]));
    assert_failed(held, CF_HTTPC_CANCELED, true, hostport(E.ports[L_PLAIN]));
    assert_ok(killer, 200);
    assert_failed(victim, CF_HTTPC_CANCELED, true, hostport(E.ports[L_PLAIN]));
    assert_true(victim->seq > killer->seq);
    assert_int_equal(E.done_calls, 4);

    /* The client still works. */
    send_req(&req, after);
    wait_done(5, 5000);
    assert_ok(after, 200);
}

static void test_close_with_transfers_under_way(void **state)
{
    (void)state;
    struct raw *silent = raw_new(NULL, 0);
    struct result *held = res(), *quiet = res(), *fresh = res();
    struct cf_httpc_req req = {.method = "GET", .url = url(E.ports[L_PLAIN], false, "/hold")};
    send_req(&req, held);
    req.url = url(silent->port, false, "/");
    send_req(&req, quiet);
    int one = 1;
    assert_true(run_until(held_at_least, &one, 5000));
    assert_true(run_until(raw_requests_at_least, silent, 5000));
    req.url = url(E.ports[L_PLAIN], false, "/echo");
    fresh->send_in_done = true; /* the client is closing: refused */
    send_req(&req, fresh);

    close_client();
    assert_int_equal(E.done_calls, 0);
    assert_true(run_until(is_closed, NULL, 5000));
    run_for(50);

    assert_failed(held, CF_HTTPC_CANCELED, true, hostport(E.ports[L_PLAIN]));
    assert_failed(quiet, CF_HTTPC_CANCELED, true, hostport(silent->port));
    assert_failed(fresh, CF_HTTPC_CANCELED, false, hostport(E.ports[L_PLAIN]));
    assert_int_equal(fresh->send_in_done_rc, CF_ESTATE);
    assert_int_equal(E.done_calls, 3);
    assert_true(E.closed_seq > held->seq && E.closed_seq > quiet->seq && E.closed_seq > fresh->seq);
    /* env_teardown checks uv_loop_close() == 0. */
}

static void test_close_from_done(void **state)
{
    (void)state;
    struct raw *silent = raw_new(NULL, 0);
    struct result *first = res(), *held = res(), *quiet = res();
    struct cf_httpc_req req = {.method = "GET", .url = url(E.ports[L_PLAIN], false, "/hold")};
    send_req(&req, held);
    req.url = url(silent->port, false, "/");
    send_req(&req, quiet);
    int one = 1;
    assert_true(run_until(held_at_least, &one, 5000));
    first->close_in_done = true;
    req.url = url(E.ports[L_PLAIN], false, "/echo");
    send_req(&req, first);
    assert_true(run_until(is_closed, NULL, 5000));
    assert_ok(first, 200);
    assert_failed(held, CF_HTTPC_CANCELED, true, NULL);
    assert_failed(quiet, CF_HTTPC_CANCELED, true, NULL);
    assert_true(E.closed_seq > held->seq && E.closed_seq > quiet->seq);
    assert_int_equal(E.done_calls, 3);
}

#define N_PARALLEL 200

static void test_parallel_requests(void **state)
{
    (void)state;
    struct result *rs[N_PARALLEL];
    char ids[N_PARALLEL][16];
    uint64_t t0 = cf_mono_ms();
    for (int i = 0; i < N_PARALLEL; i++) {
        snprintf(ids[i], sizeof(ids[i]), "id-%d", i);
        const struct cf_httpc_header h[] = {{"X-Foo", ids[i]}};
        struct cf_httpc_req req = {.method = "POST",
                                   .url =
                                       url(E.ports[i % 10 ? L_PLAIN : L_TLS], i % 10 == 0, "/echo"),
                                   .headers = h,
                                   .n_headers = 1,
                                   .body = (const uint8_t *)ids[i],
                                   .body_len = strlen(ids[i]),
                                   .tls = &(struct cf_httpc_tls){.ca_file = P("ca.pem")}};
        rs[i] = res();
        send_req(&req, rs[i]);
    }
    wait_done(N_PARALLEL, 20000);
    for (int i = 0; i < N_PARALLEL; i++) {
        assert_ok(rs[i], 200);
        assert_string_equal(rs[i]->x_echo, ids[i]);
        assert_int_equal(rs[i]->body_len, strlen(ids[i]));
        assert_memory_equal(rs[i]->body, ids[i], rs[i]->body_len);
    }
    assert_int_equal(E.requests, N_PARALLEL);
    fprintf(stderr, "%d parallel requests (a tenth TLS) in %llu ms over %d connections\n",
            N_PARALLEL, (unsigned long long)(cf_mono_ms() - t0), E.n_peers);
}

static void test_keepalive_reuses_connection(void **state)
{
    (void)state;
    struct cf_httpc_tls good = {.ca_file = P("ca.pem")};
    struct result *r[4];
    for (int i = 0; i < 4; i++) {
        bool tls = i >= 2;
        struct cf_httpc_req req = {.method = "GET",
                                   .url = url(E.ports[tls ? L_TLS : L_PLAIN], tls, "/echo"),
                                   .tls = tls ? &good : NULL};
        r[i] = res();
        send_req(&req, r[i]);
        wait_done(i + 1, 5000);
        assert_ok(r[i], 200);
    }
    /* One connection per listener, each used twice. */
    assert_int_equal(E.requests, 4);
    assert_int_equal(E.n_peers, 2);
    assert_string_equal(r[0]->x_peer, r[1]->x_peer);
    assert_string_equal(r[2]->x_peer, r[3]->x_peer);
    assert_string_not_equal(r[0]->x_peer, r[2]->x_peer);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct result *r = res();
    struct cf_httpc_xfer *x = (struct cf_httpc_xfer *)r; /* must be reset to NULL */
    const char *u = url(E.ports[L_PLAIN], false, "/echo");
    struct cf_httpc_req ok = {.method = "GET", .url = u};
    assert_int_equal(cf_httpc_send(NULL, &ok, on_done, r, &x), CF_EINVAL);
    assert_null(x);
    assert_int_equal(cf_httpc_send(E.client, NULL, on_done, r, NULL), CF_EINVAL);
    assert_int_equal(cf_httpc_send(E.client, &ok, NULL, r, NULL), CF_EINVAL);
    struct cf_httpc_req req = {.url = u};
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    req = (struct cf_httpc_req){.method = "GET"};
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    req = (struct cf_httpc_req){.method = "PATCH", .url = u};
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    const struct cf_httpc_header smuggle[] = {{"X-A", "1\r\nX-Injected: 2"}};
    req = (struct cf_httpc_req){.method = "GET", .url = u, .headers = smuggle, .n_headers = 1};
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    const struct cf_httpc_header badname[] = {{"X A", "1"}};
    req.headers = badname;
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    req = (struct cf_httpc_req){.method = "GET", .url = u, .n_headers = 1};
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    req = (struct cf_httpc_req){
        .method = "GET", .url = u, .body = (const uint8_t *)"b", .body_len = 1};
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    req = (struct cf_httpc_req){.method = "POST", .url = u, .body_len = 1};
    assert_int_equal(cf_httpc_send(E.client, &req, on_done, r, NULL), CF_EINVAL);
    run_for(20);
    assert_int_equal(r->calls, 0);

    /* What is wrong in the URL is the transfer's failure, reported through `done`, which
     * never names the URL itself (it may hold credentials). */
    struct result *bad = res(), *ftp = res(), *empty_header = res();
    req = (struct cf_httpc_req){.method = "GET", .url = "http://user:pw-in-url@exa mple/"};
    send_req(&req, bad);
    req = (struct cf_httpc_req){.method = "GET", .url = "ftp://127.0.0.1/file"};
    send_req(&req, ftp);
    const struct cf_httpc_header empty[] = {{"X-Foo", ""}};
    req = (struct cf_httpc_req){.method = "GET", .url = u, .headers = empty, .n_headers = 1};
    send_req(&req, empty_header);
    wait_done(3, 5000);
    assert_failed(bad, CF_HTTPC_LOCAL, false, NULL);
    assert_null(strstr(bad->error, "pw-in-url"));
    assert_failed(ftp, CF_HTTPC_LOCAL, false, "127.0.0.1:21");
    assert_ok(empty_header, 200);
    assert_string_equal(empty_header->x_echo, "");

    cf_httpc_close(NULL, NULL, NULL); /* a no-op */
    cf_httpc_cancel(NULL);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)
    const struct CMUnitTest tests[] = {
        T(test_get_post_put_delete_echo),
        T(test_error_statuses_are_answers),
        T(test_response_headers),
        T(test_connection_refused),
        T(test_resolve_failure),
        T(test_silent_server_times_out),
        T(test_broken_and_bad_replies),
        T(test_https_trust),
        T(test_client_certificates),
        T(test_no_password_prompt_on_a_terminal),
        T(test_max_response),
        T(test_cancel),
        T(test_close_with_transfers_under_way),
        T(test_close_from_done),
        T(test_parallel_requests),
        T(test_keepalive_reuses_connection),
        T(test_bad_arguments),
    };
#undef T
    return cmocka_run_group_tests_name("http client", tests, setup_pki, teardown_pki);
}
