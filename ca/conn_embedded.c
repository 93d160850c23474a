/*
 * The embedded connector: certificates from certflow's own CA (ca/embedded.h). The CA lives in a
 * directory of the data directory and is created with defaults the first time a certificate is
 * asked for, so that a fresh certflow issues certificates without any setup (`certflow ca init`
 * makes it explicitly, with other choices). Issuing — decoding and verifying the CSR, building,
 * signing and encoding the certificate, and bundling the chain — runs on the libuv thread pool;
 * the loop thread only queues the work and delivers the result.
 *
 * What it leaves to others: the template lookup, the idempotency ledger and storing the
 * certificate are ca/service.c's. The ledger handed to cf_ca_issue() only answers from the
 * certificate the service found in the store for the step's key; recording a new certificate is
 * the service's insert, made before the certificate is handed to the process.
 */
#include "ca/connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ca/service.h"

struct job;

struct embedded {
    struct cf_ca_connector pub;
    uv_loop_t *loop;
    char *dir;
    char *secret_file;
    char *secret_env;
    bool has_secret;
    /* Guards `ca` while the first jobs race to open (or create) it; an open CA is immutable and
     * shared by every worker without the lock held. */
    uv_mutex_t lock;
    struct cf_ca *ca;
    struct job *jobs; /* queued or running, for shutdown() */
};

struct job {
    uv_work_t work;
    struct embedded *emb;
    struct job *prev, *next;
    const struct cf_ca_conn_request *req;
    cf_ca_conn_done_fn done;
    void *arg;
    enum cf_ca_status st;
    char msg[1024];
    struct cf_ca_issued issued;
    char *pem;
    uint8_t *p7;
    size_t p7_len;
    /* The SHA-256 fingerprint of the root this job created, logged on the loop thread; "" when
     * the CA existed. */
    char created_fpr[CF_CA_FPR_LEN];
};

/* ---- the kind ---- */

static int check_settings(const json_t *settings, char *err, size_t errlen)
{
    if (!json_is_object(settings)) {
        cf_errf(err, errlen, "settings: must be a JSON object");
        return CF_EINVAL;
    }
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)settings, name, v)
    {
        (void)v;
        cf_errf(err, errlen,
                "settings.%s: the embedded connector has no settings (its CA lives in the data "
                "directory); use {}",
                name);
        return CF_EINVAL;
    }
    return 0;
}

static int supports_override(const json_t *settings, char *why, size_t whylen)
{
    (void)settings;
    if (why && whylen)
        why[0] = '\0';
    return 1;
}

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen);

const struct cf_ca_connector_kind cf__ca_kind_embedded = {
    .name = "embedded",
    .available = true,
    .check_settings = check_settings,
    .supports_override = supports_override,
    .create = create,
};

/* ---- the worker ---- */

/* The ledger of cf_ca_issue() for one job: the certificate the service found in the store for
 * the step's key, if any. */
static int known_find(void *arg, const char *key, uint8_t **der, size_t *len, char *err,
                      size_t errlen)
{
    const struct cf_ca_conn_request *r = arg;
    (void)key;
    (void)err;
    (void)errlen;
    if (!r->known_der)
        return CF_ENOENT;
    *der = cf_xmemdup(r->known_der, r->known_der_len);
    *len = r->known_der_len;
    return 0;
}

/* A new certificate is recorded by the service's insert after this job, in the same store that
 * known_find() answers from, and is never handed out before that insert commits; a race between
 * two runs of one step ends at the insert's unique key. So there is nothing to record here. */
static int known_record(void *arg, const char *key, const uint8_t *der, size_t len,
                        uint8_t **existing, size_t *existing_len, char *err, size_t errlen)
{
    (void)arg;
    (void)key;
    (void)der;
    (void)len;
    (void)existing;
    (void)existing_len;
    (void)err;
    (void)errlen;
    return 0;
}

/* The CA, opened (or first created) on the first job that needs it. */
static const struct cf_ca *ca_get(struct embedded *emb, struct job *j)
{
    uv_mutex_lock(&emb->lock);
    if (!emb->ca) {
        char err[512] = "";
        struct cf_ca_secret secret = {.file = emb->secret_file, .env = emb->secret_env};
        const struct cf_ca_secret *sp = emb->has_secret ? &secret : NULL;
        int rc = cf_ca_open(emb->dir, sp, &emb->ca, err, sizeof(err));
        if (rc == CF_ENOENT) {
            struct cf_ca_init_opts opts = {.key_alg = CF_CA_KEY_EC_P256};
            if (sp)
                opts.secret = secret;
            rc = cf_ca_init(emb->dir, &opts, err, sizeof(err));
            /* CF_EEXIST: someone (certflow ca init, another process) made it meanwhile. */
            bool made = rc == 0;
            if (!rc || rc == CF_EEXIST)
                rc = cf_ca_open(emb->dir, sp, &emb->ca, err, sizeof(err));
            if (!rc && made)
                cf_ca_fingerprint(cf_ca_root_cert(emb->ca), j->created_fpr);
        }
        if (rc) {
            j->st = CF_CA_CONNECTION_FAILED;
            snprintf(j->msg, sizeof(j->msg), "the embedded CA in %s cannot be used: %s", emb->dir,
                     err);
        }
    }
    const struct cf_ca *ca = emb->ca;
    uv_mutex_unlock(&emb->lock);
    return ca;
}

static void work_cb(uv_work_t *w)
{
    struct job *j = cf_container_of(w, struct job, work);
    const struct cf_ca *ca = ca_get(j->emb, j);
    if (!ca)
        return;
    const struct cf_ca_conn_request *r = j->req;
    struct cf_ca_ledger ledger = {.find = known_find, .record = known_record, .arg = (void *)r};
    struct cf_ca_request cr = {
        .csr = r->csr,
        .csr_len = r->csr_len,
        .policy = r->policy,
        .overrides = r->overrides,
        .idempotency_key = r->idempotency_key,
        .ledger = &ledger,
    };
    j->st = cf_ca_issue(ca, &cr, &j->issued, j->msg, sizeof(j->msg));
    if (j->st)
        return;
    j->pem = cf_cert_pem(j->issued.der, j->issued.der_len);
    char err[256];
    if (!j->pem || cf_ca_pkcs7_chain(ca, j->issued.der, j->issued.der_len, &j->p7, &j->p7_len, err,
                                     sizeof(err)) != 0) {
        j->st = CF_CA_CONNECTION_FAILED;
        snprintf(j->msg, sizeof(j->msg), "the embedded CA cannot encode the result: %s",
                 j->pem ? err : "out of memory");
    }
}

static void unlink_job(struct job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        j->emb->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
}

static void after_cb(uv_work_t *w, int status)
{
    struct job *j = cf_container_of(w, struct job, work);
    unlink_job(j);
    if (status == UV_ECANCELED) {
        j->st = CF_CA_CONNECTION_FAILED;
        snprintf(j->msg, sizeof(j->msg),
                 "certflow stopped before the embedded CA issued the certificate");
    }
    if (j->created_fpr[0])
        cf_log(CF_LOG_INFO,
               "embedded CA: none was in %s, so one was made with defaults (root SHA-256 %s)",
               j->emb->dir, j->created_fpr);
    struct cf_ca_conn_result res = {.status = j->st, .message = j->st ? j->msg : NULL};
    if (!j->st) {
        res.der = j->issued.der;
        res.der_len = j->issued.der_len;
        res.info = &j->issued.info;
        res.pem = j->pem;
        res.chain_p7 = j->p7;
        res.chain_p7_len = j->p7_len;
        res.replayed = j->issued.replayed;
    }
    j->done(j->arg, &res);
    cf_ca_issued_clear(&j->issued);
    free(j->pem);
    free(j->p7);
    free(j);
}

/* ---- the connector ---- */

static int issue(struct cf_ca_connector *c, const struct cf_ca_conn_request *req,
                 cf_ca_conn_done_fn done, void *arg)
{
    struct embedded *emb = cf_container_of(c, struct embedded, pub);
    if (!req || !done)
        return CF_EINVAL;
    struct job *j = cf_xcalloc(1, sizeof(*j));
    j->emb = emb;
    j->req = req;
    j->done = done;
    j->arg = arg;
    if (uv_queue_work(emb->loop, &j->work, work_cb, after_cb) != 0) {
        free(j);
        return CF_EINVAL;
    }
    j->next = emb->jobs;
    if (emb->jobs)
        emb->jobs->prev = j;
    emb->jobs = j;
    return 0;
}

static void shutdown_conn(struct cf_ca_connector *c)
{
    struct embedded *emb = cf_container_of(c, struct embedded, pub);
    /* Work not yet started is dropped (its after_cb reports UV_ECANCELED); signing that already
     * runs cannot be interrupted and ends normally. */
    for (struct job *j = emb->jobs; j; j = j->next)
        uv_cancel((uv_req_t *)&j->work);
}

static void free_conn(struct cf_ca_connector *c)
{
    if (!c)
        return;
    struct embedded *emb = cf_container_of(c, struct embedded, pub);
    cf_ca_close(emb->ca);
    uv_mutex_destroy(&emb->lock);
    free(emb->dir);
    free(emb->secret_file);
    free(emb->secret_env);
    free(emb);
}

static const struct cf_ca_connector_ops ops = {
    .issue = issue,
    .shutdown = shutdown_conn,
    .free = free_conn,
};

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen)
{
    if (!env || !env->loop || !env->ca_dir || !*env->ca_dir) {
        cf_errf(err, errlen, "the embedded connector needs a loop and a CA directory");
        return CF_EINVAL;
    }
    struct embedded *emb = cf_xcalloc(1, sizeof(*emb));
    if (uv_mutex_init(&emb->lock) != 0) {
        free(emb);
        cf_errf(err, errlen, "cannot create a mutex");
        return CF_ENOMEM;
    }
    emb->pub.ops = &ops;
    emb->pub.kind = &cf__ca_kind_embedded;
    emb->loop = env->loop;
    emb->dir = cf_xstrdup(env->ca_dir);
    if (env->secret && (env->secret->file || env->secret->env)) {
        emb->has_secret = true;
        emb->secret_file = env->secret->file ? cf_xstrdup(env->secret->file) : NULL;
        emb->secret_env = env->secret->env ? cf_xstrdup(env->secret->env) : NULL;
    }
    *out = &emb->pub;
    return 0;
}
