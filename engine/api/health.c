/*
 * /health/live, /health/ready and /metrics for operators and their probes and scrapers.
 *
 * Liveness is answered on the loop thread, so an answer at all proves the loop runs; the time the
 * request waited between arriving complete and being handled is the loop's lag, and a lag beyond
 * LIVE_MAX_LAG_MS counts as not live. Readiness checks that the database takes a write lock
 * (BEGIN IMMEDIATE then ROLLBACK: nothing is written) and that the latest version of every
 * process still loads and validates against the plug-ins that are loaded now; a definition is
 * parsed once and remembered by id, so a probe every few seconds costs one small query.
 *
 * /metrics is Prometheus text format 0.0.4 with low-cardinality labels only (states, types,
 * result kinds, status classes): never a tenant, user, key or id. What it leaves to others: the
 * counters come from the engine (cf_engine_stats), the push endpoint (cf_api_push_stats) and the
 * HTTP server (cf_http_server_stats); totals are read with store/query.h.
 */
#include "api/api.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpmn/model.h"
#include "store/query.h"

#define CERTFLOW_VERSION "0.1.0"
#define CAMUNDA_VERSION "7.20.0"
#define LIVE_MAX_LAG_MS 10000u

/* ---- readiness: definitions that load ------------------------------------------------------ */

/* What the last readiness probes found out about definitions. It is kept per API object (an
 * address, in a process there is normally one) because only the loop thread touches it. */
static struct defs_cache {
    const struct cf_api *api;
    int64_t checked_up_to; /* every latest version with a lower or equal id was checked */
    int64_t bad_id;        /* a latest version that does not load, or 0 */
    char bad[256];         /* why, naming key and version */
} cache;

struct def_check {
    struct cf_api *api;
    int64_t bad_id;
    char bad[256];
    int64_t max_seen;
};

static int check_def(void *arg, const struct cf_def_row *d)
{
    struct def_check *c = arg;
    if (d->id > c->max_seen)
        c->max_seen = d->id;
    struct cf_model **models = NULL;
    size_t n = 0;
    struct cf_diags diags, warnings;
    cf_diags_init(&diags);
    cf_diags_init(&warnings);
    int rc = cf_bpmn_load(d->xml, d->xml_len, &models, &n, &diags);
    if (!rc)
        rc = cf_engine_check_models(cf_engine_registry(cf_api_engine(c->api)), cf_api_store(c->api),
                                    d->tenant_id, models, n, &diags, &warnings);
    if (rc && !c->bad_id) {
        c->bad_id = d->id;
        snprintf(c->bad, sizeof c->bad, "process %s version %d does not load: %s", d->key,
                 d->version, diags.count ? diags.items[0].message : cf_strerror(rc));
    }
    cf_models_free(models, n);
    cf_diags_free(&diags);
    cf_diags_free(&warnings);
    return 0;
}

/* Checks latest versions newer than the last check (all of them when the one that failed is
 * still the latest); fills *count with the number of definitions. */
static int definitions_ok(struct cf_api *api, int64_t *count, char *why, size_t whylen)
{
    struct cf_store *st = cf_api_store(api);
    int64_t max_id = 0;
    int rc = cf_query_def_totals(st, count, &max_id);
    if (rc) {
        snprintf(why, whylen, "definitions cannot be read: %s", cf_strerror(rc));
        return rc;
    }
    if (cache.api != api) {
        memset(&cache, 0, sizeof cache);
        cache.api = api;
    }
    /* A failed definition is looked at again on every probe: a new version replaces it, and
     * admin parameters set meanwhile may make it valid. */
    int64_t from = cache.bad_id ? 0 : cache.checked_up_to;
    if (max_id > cache.checked_up_to || cache.bad_id) {
        struct def_check c = {.api = api};
        rc = cf_query_latest_defs_xml(st, from, check_def, &c);
        if (rc) {
            snprintf(why, whylen, "definitions cannot be read: %s", cf_strerror(rc));
            return rc;
        }
        cache.checked_up_to = max_id;
        cache.bad_id = c.bad_id;
        memcpy(cache.bad, c.bad, sizeof cache.bad);
    }
    if (cache.bad_id) {
        snprintf(why, whylen, "%s", cache.bad);
        return CF_EINVALID;
    }
    return 0;
}

/* BEGIN IMMEDIATE takes the write lock without writing; ROLLBACK gives it back. */
static int database_writable(struct cf_store *st, char *why, size_t whylen)
{
    if (cf_store_in_tx(st))
        return 0; /* a transaction of the engine is open: it holds the lock, so writes work */
    int rc = cf_store_begin(st);
    if (rc) {
        snprintf(why, whylen, "the database takes no write lock: %s (%s)", cf_strerror(rc),
                 cf_store_errmsg(st));
        return rc;
    }
    rc = cf_store_rollback(st);
    if (rc)
        snprintf(why, whylen, "rollback failed: %s", cf_strerror(rc));
    return rc;
}

static json_t *check(bool up, const char *why)
{
    json_t *o = json_pack("{s:s}", "status", up ? "UP" : "DOWN");
    if (!up && why && *why)
        json_object_set_new(o, "reason", json_string(why));
    return o;
}

static void h_live(struct cf_api_request *r)
{
    uint64_t now = cf_mono_ms();
    uint64_t lag = now > r->http->received_ms ? now - r->http->received_ms : 0;
    bool up = lag <= LIVE_MAX_LAG_MS;
    json_t *o = json_pack("{s:s, s:I}", "status", up ? "UP" : "DOWN", "loopLagMs", (json_int_t)lag);
    cf_api_respond_json(r, up ? 200 : 503, o);
}

static void h_ready(struct cf_api_request *r)
{
    struct cf_store *st = cf_api_store(r->api);
    char db_why[256] = "", defs_why[256] = "";
    int64_t n_defs = 0;
    bool db_up = database_writable(st, db_why, sizeof db_why) == 0;
    bool defs_up = definitions_ok(r->api, &n_defs, defs_why, sizeof defs_why) == 0;
    struct cf_engine_stats es;
    cf_engine_stats(cf_api_engine(r->api), &es);
    json_t *db = check(db_up, db_why);
    json_object_set_new(db, "schemaVersion", json_integer(cf_store_schema_version(st)));
    json_t *defs = check(defs_up, defs_why);
    json_object_set_new(defs, "count", json_integer(n_defs));
    json_t *engine =
        json_pack("{s:s, s:I, s:I, s:i}", "status", "UP", "queued", (json_int_t)es.items, "ready",
                  (json_int_t)es.ready, "running", es.running);
    bool up = db_up && defs_up;
    json_t *o = json_pack("{s:s, s:{s:o, s:o, s:o}}", "status", up ? "UP" : "DOWN", "checks",
                          "database", db, "definitions", defs, "engine", engine);
    if (!up)
        cf_log(CF_LOG_WARN, "health: not ready: %s%s%s", db_why, *db_why && *defs_why ? "; " : "",
               defs_why);
    cf_api_respond_json(r, up ? 200 : 503, o);
}

/* ---- /metrics ------------------------------------------------------------------------------ */

static void metric_head(struct cf_buf *b, const char *name, const char *type, const char *help)
{
    cf_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

struct labelled {
    const char *label;
    int64_t count;
};

static int put_count(void *arg, const char *label, int64_t count)
{
    struct labelled *known = arg;
    for (; known->label; known++)
        if (strcmp(known->label, label) == 0)
            known->count += count;
    return 0;
}

static void h_metrics(struct cf_api_request *r)
{
    struct cf_store *st = cf_api_store(r->api);
    struct cf_buf b;
    cf_buf_init(&b);

    metric_head(&b, "certflow_build_info", "gauge", "Version of certflow and of the REST API.");
    cf_buf_printf(&b, "certflow_build_info{version=\"%s\",camunda_rest=\"%s\"} 1\n",
                  CERTFLOW_VERSION, CAMUNDA_VERSION);

    /* Fixed label sets, so that a series exists (at 0) before its first event and the
     * cardinality can never grow with data. */
    struct labelled states[] = {{"CREATED", 0},    {"ACTIVE", 0},   {"COMPLETED", 0},
                                {"TERMINATED", 0}, {"CANCELED", 0}, {NULL, 0}};
    struct labelled types[] = {{"failedJob", 0},  {"unhandledBpmnError", 0}, {"noMatchingFlow", 0},
                               {"expression", 0}, {"runawayLoop", 0},        {NULL, 0}};
    int64_t due = 0, exhausted = 0;
    int rc = cf_query_instance_states(st, put_count, states);
    if (!rc)
        rc = cf_query_open_incident_types(st, put_count, types);
    if (!rc)
        rc = cf_query_job_counts(st, cf_now_ms(), &due, &exhausted);
    if (rc) {
        cf_buf_free(&b);
        cf_api_error(r, 503, NULL, "metrics cannot be read: %s", cf_strerror(rc));
        return;
    }
    metric_head(&b, "certflow_process_instances", "gauge", "Process instances by state.");
    for (struct labelled *l = states; l->label; l++)
        cf_buf_printf(&b, "certflow_process_instances{state=\"%s\"} %" PRId64 "\n", l->label,
                      l->count);
    metric_head(&b, "certflow_incidents_open", "gauge", "Open incidents by type.");
    for (struct labelled *l = types; l->label; l++)
        cf_buf_printf(&b, "certflow_incidents_open{type=\"%s\"} %" PRId64 "\n", l->label, l->count);

    struct cf_engine_stats es;
    cf_engine_stats(cf_api_engine(r->api), &es);
    metric_head(&b, "certflow_jobs_due", "gauge", "Jobs due now with retries left, not locked.");
    cf_buf_printf(&b, "certflow_jobs_due %" PRId64 "\n", due);
    metric_head(&b, "certflow_jobs_running", "gauge", "Jobs running now (plug-in calls included).");
    cf_buf_printf(&b, "certflow_jobs_running %d\n", es.running);
    metric_head(&b, "certflow_jobs_ready", "gauge", "Jobs committed and waiting for a free slot.");
    cf_buf_printf(&b, "certflow_jobs_ready %zu\n", es.ready);
    metric_head(&b, "certflow_jobs_exhausted", "gauge", "Jobs without retries left.");
    cf_buf_printf(&b, "certflow_jobs_exhausted %" PRId64 "\n", exhausted);
    metric_head(&b, "certflow_engine_queued", "gauge",
                "Outcomes and jobs waiting for the next batch transaction.");
    cf_buf_printf(&b, "certflow_engine_queued %zu\n", es.items);
    metric_head(&b, "certflow_db_commits_total", "counter",
                "Write transactions committed since start.");
    cf_buf_printf(&b, "certflow_db_commits_total %" PRIu64 "\n", es.commits);

    struct cf_push_stats ps;
    cf_api_push_stats(r->api, &ps);
    metric_head(&b, "certflow_pushes_total", "counter", "Certificate pushes by result.");
    cf_buf_printf(&b,
                  "certflow_pushes_total{result=\"accepted\"} %" PRIu64 "\n"
                  "certflow_pushes_total{result=\"duplicate\"} %" PRIu64 "\n"
                  "certflow_pushes_total{result=\"rejected\"} %" PRIu64 "\n"
                  "certflow_pushes_total{result=\"failed\"} %" PRIu64 "\n",
                  ps.accepted, ps.duplicates, ps.rejected, ps.failed);

    struct cf_http_stats hs;
    memset(&hs, 0, sizeof hs);
    struct cf_http_server *server = cf_api_server(r->api);
    if (server)
        cf_http_server_stats(server, &hs);
    metric_head(&b, "certflow_http_requests_total", "counter", "HTTP responses by status class.");
    for (int c = 1; c <= 5; c++)
        cf_buf_printf(&b, "certflow_http_requests_total{code=\"%dxx\"} %" PRIu64 "\n", c,
                      hs.responses_by_class[c]);
    metric_head(&b, "certflow_http_open_connections", "gauge", "Open HTTP connections.");
    cf_buf_printf(&b, "certflow_http_open_connections %" PRIu64 "\n", hs.open_connections);
    metric_head(&b, "certflow_tls_handshake_failures_total", "counter",
                "TLS handshakes that failed.");
    cf_buf_printf(&b, "certflow_tls_handshake_failures_total %" PRIu64 "\n",
                  hs.tls_handshake_failures);
    metric_head(&b, "certflow_http_request_duration_seconds", "histogram",
                "Time from a complete request to its response.");
    size_t nb = CF_ARRAY_LEN(hs.latency_bucket_counts);
    for (size_t i = 0; i < nb; i++) {
        if (isinf(cf_http_latency_bounds[i]))
            cf_buf_printf(
                &b, "certflow_http_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                hs.latency_bucket_counts[i]);
        else
            cf_buf_printf(&b,
                          "certflow_http_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                          cf_http_latency_bounds[i], hs.latency_bucket_counts[i]);
    }
    cf_buf_printf(&b, "certflow_http_request_duration_seconds_sum %.6f\n", hs.latency_sum_s);
    cf_buf_printf(&b, "certflow_http_request_duration_seconds_count %" PRIu64 "\n",
                  hs.latency_bucket_counts[nb - 1]);

    cf_api_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    cf_buf_free(&b);
}

/* ---- registration -------------------------------------------------------------------------- */

/* Probes run without credentials (load balancers and kubelets have none); /metrics needs a user
 * because its totals describe every tenant's traffic. */
static const struct cf_route routes[] = {
    {"GET", "/health/live", h_live, CF_ROUTE_PUBLIC, 0},
    {"GET", "/health/ready", h_ready, CF_ROUTE_PUBLIC, 0},
    {"GET", "/health", h_ready, CF_ROUTE_PUBLIC, 0},
    {"GET", "/metrics", h_metrics, 0, 0},
};

void cf_api_health_routes(struct cf_api *api)
{
    cf_api_register(api, routes, CF_ARRAY_LEN(routes));
}
