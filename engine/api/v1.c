/*
 * certflow's own admin API under /api/v1: task parameters (validated against the plug-in task's
 * schema, as `certflow params set` does; secret values are write-only and read back as "***"),
 * certificate templates, users, and the certificate core objects pushed or issued.
 *
 * Tenancy: a tenant is named with ?tenantId= (or "tenantId" in a body) and must be one of the
 * caller's (403 otherwise); without one, the caller's only tenant is meant. Objects are looked up
 * within the caller's tenants, so another tenant's object is 404. Users are visible to admins who
 * share a tenant with them. Admin-only routes carry CF_ROUTE_ADMIN; the router enforces it.
 *
 * Never in an answer: password hashes (only whether a user has a password), secret parameter
 * values, and template settings that are secrets: those the connector kind names in its
 * secret_fields (ca/connector.h) and those whose names mark them as secrets (see
 * redact_settings). Template writes are checked with cf_ca_template_check() before they are
 * stored, and a secret given back as "***" (what a GET shows) keeps the stored value, so that a
 * template read, edited and written back does not lose its secrets.
 *
 * What it leaves to others: rows come from store/admin.h and store.h; changes to users run
 * inside the engine's batch transaction (cf_engine_submit) so that a user and its memberships
 * commit together; password hashing runs on the libuv thread pool because argon2id is slow by
 * design.
 */
#include "api/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "api/router_internal.h"
#include "base/iso8601.h"
#include "bpmn/model.h"
#include "ca/connector.h"
#include "plugin/registry.h"
#include "store/admin.h"
#include "store/query.h"

#define QBUF 1024
#define MAX_VALUE_BYTES (64u * 1024u)
#define MAX_NAME 128
#define MIN_PASSWORD 8
#define MAX_PASSWORD 1024
#define MAX_RESULTS 10000
#define SECRET_MASK "***"

/* ---- helpers ------------------------------------------------------------------------------- */

static json_t *jstr(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_null();
}

static json_t *jid(int64_t id)
{
    if (!id)
        return json_null();
    char b[24];
    snprintf(b, sizeof b, "%" PRId64, id);
    return json_string(b);
}

static json_t *jtime(uint64_t ms)
{
    if (!ms)
        return json_null();
    char b[CF_TIME_ISO_LEN];
    cf_time_iso(ms, b);
    return json_string(b);
}

static void set(json_t *o, const char *k, json_t *v)
{
    json_object_set_new(o, k, v ? v : json_null());
}

static int parse_id(const char *s, int64_t *out)
{
    int64_t v;
    if (!s || !*s || s[0] == '+' || s[0] == '-' || cf_parse_i64(s, &v) != 0 || v <= 0)
        return CF_EINVAL;
    *out = v;
    return 0;
}

static void fail(struct cf_api_request *r, int rc, const char *what)
{
    int status = rc == CF_EBUSY || rc == CF_EFULL || rc == CF_EIO ? 503 : 500;
    cf_log(CF_LOG_WARN, "api/v1: %s failed: %s", what, cf_strerror(rc));
    cf_api_error(r, status, NULL, "%s failed: %s", what, cf_strerror(rc));
}

/* A name-like text: 1 to MAX_NAME printable characters. */
static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* The tenant a request means: ?tenantId= (which must be the caller's: 403) or the caller's only
 * tenant (400 when there are several). Answers itself and returns NULL on error; the result
 * points into the principal or into `buf`. */
static const char *request_tenant(struct cf_api_request *r, const char *given, char *buf,
                                  size_t buflen)
{
    const char *t = given;
    if (!t) {
        int rc = cf_http_query_param(r->http, "tenantId", buf, buflen);
        if (rc == CF_ELIMIT) {
            cf_api_error(r, 400, NULL, "tenantId is too long");
            return NULL;
        }
        t = rc == 0 ? buf : NULL;
    }
    if (t) {
        if (!cf_principal_has_tenant(&r->who, t)) {
            cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'", r->who.name, t);
            return NULL;
        }
        return t;
    }
    if (r->who.n_tenants == 1)
        return r->who.tenants[0];
    cf_api_error(r, 400, NULL,
                 r->who.n_tenants ? "tenantId is required: user %s belongs to several tenants"
                                  : "user %s belongs to no tenant",
                 r->who.name);
    return NULL;
}

static json_t *body_object(struct cf_api_request *r)
{
    if (!r->http->body_len) {
        cf_api_error(r, 400, NULL, "a JSON body is required");
        return NULL;
    }
    json_error_t je;
    json_t *j =
        json_loadb((const char *)r->http->body, r->http->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        cf_api_error(r, 400, NULL, "the body must be a JSON object (line %d, column %d: %s)",
                     je.line, je.column, j ? "not an object" : je.text);
        return NULL;
    }
    return j;
}

/* ---- task parameters ----------------------------------------------------------------------- */

/* The latest deployed model of a process in a tenant, for schema lookups. */
struct proc {
    struct cf_model **models;
    size_t n;
    const struct cf_model *m;
};

static void proc_free(struct proc *p)
{
    cf_models_free(p->models, p->n);
    memset(p, 0, sizeof(*p));
}

static int proc_load(struct cf_store *st, const char *tenant, const char *key, struct proc *p)
{
    memset(p, 0, sizeof(*p));
    struct cf_def_row latest, full;
    int rc = cf_store_def_latest(st, tenant, key, &latest);
    if (rc)
        return rc;
    rc = cf_store_def_get(st, latest.id, true, &full);
    cf_def_row_free(&latest);
    if (rc)
        return rc;
    struct cf_diags d;
    cf_diags_init(&d);
    rc = cf_bpmn_load(full.xml, full.xml_len, &p->models, &p->n, &d);
    cf_diags_free(&d);
    cf_def_row_free(&full);
    for (size_t i = 0; !rc && i < p->n; i++)
        if (strcmp(p->models[i]->key, key) == 0)
            p->m = p->models[i];
    if (!rc && !p->m)
        rc = CF_ENOENT;
    if (rc)
        proc_free(p);
    return rc;
}

/* The plug-in task behind a service task of the process, or NULL. */
static const struct cf_task_def *task_in(const struct proc *p, struct cf_registry *reg,
                                         const char *activity, const struct cf_elem **el_out)
{
    const struct cf_elem *el = p->m ? cf_model_find(p->m, activity) : NULL;
    if (el_out)
        *el_out = el;
    if (!el || el->type != CF_EL_SERVICE_TASK || !el->delegate)
        return NULL;
    return cf_registry_find(reg, el->delegate, NULL);
}

/* Secrecy comes from the schema; a parameter whose task cannot be told (process or plug-in
 * gone) is treated as a secret, so that losing the schema never reveals a value. */
static bool param_secret(const struct proc *p, struct cf_registry *reg, const char *activity,
                         const char *name)
{
    const struct cf_task_def *t = task_in(p, reg, activity, NULL);
    const struct cf_param_def *d = t ? cf_task_param_find(t, name) : NULL;
    return !t || (d && (d->flags & CF_PARAM_SECRET));
}

static const char *param_type_name(enum cf_param_type t)
{
    switch (t) {
    case CF_PARAM_BOOLEAN:
        return "Boolean";
    case CF_PARAM_INTEGER:
        return "Integer";
    case CF_PARAM_VARIABLE:
        return "Variable";
    case CF_PARAM_TEXT:
        return "Text";
    default:
        return "String";
    }
}

struct param_list {
    const struct proc *p;
    struct cf_registry *reg;
    const char *only_name;
    json_t *a;
};

static int add_param(void *arg, const char *activity_id, const char *name, const char *value)
{
    struct param_list *pl = arg;
    if (pl->only_name && strcmp(name, pl->only_name) != 0)
        return 0;
    bool secret = param_secret(pl->p, pl->reg, activity_id, name);
    json_array_append_new(pl->a, json_pack("{s:o, s:o, s:o, s:b}", "activityId", jstr(activity_id),
                                           "name", jstr(name), "value",
                                           jstr(secret ? SECRET_MASK : value), "secret", secret));
    return 0;
}

/* GET /api/v1/params/{key}[/{activity}]: configured values; with an activity, also the task's
 * schema, each parameter with its configured value (masked when secret). */
static void params_list(struct cf_api_request *r, bool one_activity)
{
    char tbuf[QBUF];
    const char *tenant = request_tenant(r, NULL, tbuf, sizeof tbuf);
    if (!tenant)
        return;
    struct cf_store *st = cf_api_store(r->api);
    struct cf_registry *reg = cf_engine_registry(cf_api_engine(r->api));
    const char *key = r->captures[0];
    const char *activity = one_activity ? r->captures[1] : NULL;
    struct proc p;
    int prc = proc_load(st, tenant, key, &p);
    if (prc && prc != CF_ENOENT) {
        fail(r, prc, "reading the process");
        return;
    }
    struct param_list pl = {&p, reg, NULL, json_array()};
    int rc = cf_store_param_list(st, tenant, key, activity, add_param, &pl);
    if (rc) {
        json_decref(pl.a);
        proc_free(&p);
        fail(r, rc, "listing parameters");
        return;
    }
    if (!one_activity) {
        proc_free(&p);
        cf_api_respond_json(r, 200, pl.a);
        return;
    }
    const struct cf_elem *el = NULL;
    const struct cf_task_def *t = prc ? NULL : task_in(&p, reg, activity, &el);
    json_t *o = json_object();
    set(o, "processKey", jstr(key));
    set(o, "activityId", jstr(activity));
    set(o, "tenantId", jstr(tenant));
    set(o, "task", jstr(t ? t->name : el && el->delegate ? el->delegate : NULL));
    json_t *schema = json_array();
    for (size_t i = 0; t && i < cf_task_param_count(t); i++) {
        const struct cf_param_def *d = cf_task_param_at(t, i);
        json_t *s = json_object();
        set(s, "name", jstr(d->name));
        set(s, "type", json_string(param_type_name(d->type)));
        set(s, "mandatory", json_boolean(d->flags & CF_PARAM_MANDATORY));
        set(s, "secret", json_boolean(d->flags & CF_PARAM_SECRET));
        set(s, "description", jstr(d->description));
        set(s, "default", d->flags & CF_PARAM_SECRET ? json_null() : jstr(d->default_value));
        json_t *vv = json_array();
        for (const char *const *v = d->valid_values; v && *v; v++)
            json_array_append_new(vv, jstr(*v));
        set(s, "validValues", vv);
        json_array_append_new(schema, s);
    }
    set(o, "parameters", schema);
    set(o, "values", pl.a);
    proc_free(&p);
    cf_api_respond_json(r, 200, o);
}

static void h_params_key(struct cf_api_request *r)
{
    params_list(r, false);
}

static void h_params_activity(struct cf_api_request *r)
{
    params_list(r, true);
}

static void h_param_get(struct cf_api_request *r)
{
    char tbuf[QBUF];
    const char *tenant = request_tenant(r, NULL, tbuf, sizeof tbuf);
    if (!tenant)
        return;
    struct cf_store *st = cf_api_store(r->api);
    struct proc p;
    int prc = proc_load(st, tenant, r->captures[0], &p);
    if (prc && prc != CF_ENOENT) {
        fail(r, prc, "reading the process");
        return;
    }
    struct param_list pl = {&p, cf_engine_registry(cf_api_engine(r->api)), r->captures[2],
                            json_array()};
    int rc = cf_store_param_list(st, tenant, r->captures[0], r->captures[1], add_param, &pl);
    proc_free(&p);
    if (rc || !json_array_size(pl.a)) {
        json_decref(pl.a);
        if (rc)
            fail(r, rc, "reading the parameter");
        else
            cf_api_error(r, 404, NULL, "no admin value for %.64s %.64s %.64s", r->captures[0],
                         r->captures[1], r->captures[2]);
        return;
    }
    json_t *one = json_incref(json_array_get(pl.a, 0));
    json_decref(pl.a);
    cf_api_respond_json(r, 200, one);
}

/* PUT {"value": "..."}: checked against the task's schema, as `certflow params set`. The
 * engine reads admin values when it loads a definition. */
static void h_param_put(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    char tbuf[QBUF], err[512];
    char *value = NULL;
    struct proc p = {0};
    const char *tenant = request_tenant(r, NULL, tbuf, sizeof tbuf);
    if (!tenant)
        goto out;
    const char *key = r->captures[0], *activity = r->captures[1], *name = r->captures[2];
    json_t *v = json_object_get(body, "value");
    if (json_is_string(v))
        value = cf_xstrndup(json_string_value(v), json_string_length(v));
    else if (json_is_integer(v))
        value = cf_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_boolean(v))
        value = cf_xstrdup(json_is_true(v) ? "true" : "false");
    if (!value || strlen(value) > MAX_VALUE_BYTES ||
        (json_is_string(v) && strlen(value) != json_string_length(v))) {
        cf_api_error(r, 400, NULL,
                     "value must be a string (or number or boolean) of at most %u "
                     "bytes",
                     MAX_VALUE_BYTES);
        goto out;
    }
    struct cf_store *st = cf_api_store(r->api);
    struct cf_registry *reg = cf_engine_registry(cf_api_engine(r->api));
    int rc = proc_load(st, tenant, key, &p);
    if (rc) {
        if (rc == CF_ENOENT)
            cf_api_error(r, 404, NULL, "no process with key '%.64s' is deployed in tenant '%.64s'",
                         key, tenant);
        else
            fail(r, rc, "reading the process");
        goto out;
    }
    const struct cf_elem *el = NULL;
    const struct cf_task_def *t = task_in(&p, reg, activity, &el);
    if (!el || el->type != CF_EL_SERVICE_TASK) {
        cf_api_error(r, 404, NULL, "process '%.64s' has no service task with id '%.64s'", key,
                     activity);
        goto out;
    }
    if (!t) {
        cf_api_error(r, 409, NULL, "activity '%.64s' calls ${%.64s}, which no loaded plug-in has",
                     activity, el->delegate ? el->delegate : "");
        goto out;
    }
    const struct cf_param_def *d = cf_task_param_find(t, name);
    if (!d && !(t->flags & CF_TASK_EXTRA_PARAMS)) {
        cf_api_error(r, 400, NULL, "task '%s' has no parameter named '%.64s'", t->name, name);
        goto out;
    }
    /* An expression is checked when the call resolves it, as the CLI does. */
    bool dynamic = strstr(value, "${") || strstr(value, "#{");
    if (d && !dynamic && cf_param_check_value(d, value, err, sizeof err) != 0) {
        cf_api_error(r, 400, NULL, "%s", err);
        goto out;
    }
    rc = cf_store_param_set(st, tenant, key, activity, name, value,
                            d && (d->flags & CF_PARAM_SECRET), cf_now_ms());
    if (rc) {
        fail(r, rc, "storing the parameter");
        goto out;
    }
    /* Deployed versions of the process use the new value from their next call. */
    cf_engine_params_changed(cf_api_engine(r->api), tenant, key);
    bool secret = d && (d->flags & CF_PARAM_SECRET);
    cf_log(CF_LOG_INFO, "api/v1: user=%s set parameter tenant=%s process=%s activity=%s name=%s",
           r->who.name, tenant, key, activity, name);
    cf_api_respond_json(r, 200,
                        json_pack("{s:o, s:o, s:o, s:o, s:b}", "processKey", jstr(key),
                                  "activityId", jstr(activity), "name", jstr(name), "value",
                                  jstr(secret ? SECRET_MASK : value), "secret", secret));
out:
    if (value)
        sodium_memzero(value, strlen(value));
    free(value);
    proc_free(&p);
    json_decref(body);
}

static void h_param_delete(struct cf_api_request *r)
{
    char tbuf[QBUF];
    const char *tenant = request_tenant(r, NULL, tbuf, sizeof tbuf);
    if (!tenant)
        return;
    int rc = cf_store_param_delete(cf_api_store(r->api), tenant, r->captures[0], r->captures[1],
                                   r->captures[2]);
    if (rc == CF_ENOENT)
        cf_api_error(r, 404, NULL, "no admin value for %.64s %.64s %.64s", r->captures[0],
                     r->captures[1], r->captures[2]);
    else if (rc)
        fail(r, rc, "deleting the parameter");
    else {
        cf_engine_params_changed(cf_api_engine(r->api), tenant, r->captures[0]);
        cf_api_no_content(r);
    }
}

/* ---- templates ----------------------------------------------------------------------------- */

/* Connector settings have no schema yet, so members whose names say "secret" are masked. This is
 * a safety net for misplaced credentials, not the way to store them (CA keys and passphrases
 * live in the CA's own secret configuration). */
static bool secret_name(const char *k)
{
    static const char *const words[] = {"password",   "passphrase", "secret", "token",
                                        "privatekey", "hmackey",    "apikey", "pin"};
    char low[64];
    size_t n = strlen(k);
    if (n >= sizeof low)
        n = sizeof low - 1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (k[i] != '_' && k[i] != '-')
            low[m++] = (char)(k[i] >= 'A' && k[i] <= 'Z' ? k[i] + 32 : k[i]);
    low[m] = '\0';
    for (size_t i = 0; i < CF_ARRAY_LEN(words); i++)
        if (strstr(low, words[i]))
            return true;
    return false;
}

static void redact_settings(json_t *j, int depth)
{
    if (depth > 16)
        return;
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
        {
            if (secret_name(k) && !json_is_null(v))
                json_object_set_new(j, k, json_string(SECRET_MASK));
            else
                redact_settings(v, depth + 1);
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            redact_settings(v, depth + 1);
        }
    }
}

/* True when `name` is a secret of the connector kind `connector` (ca/connector.h). */
static bool kind_secret(const char *connector, const char *name)
{
    const struct cf_ca_connector_kind *k = cf_ca_connector_kind(connector);
    for (size_t i = 0; k && k->secret_fields && k->secret_fields[i]; i++)
        if (strcmp(k->secret_fields[i], name) == 0)
            return true;
    return false;
}

/* Masks the kind's secret settings, then every member whose name says it is a secret. */
static void mask_settings(json_t *settings, const char *connector)
{
    const char *k;
    json_t *v;
    json_object_foreach(settings, k, v)
    {
        if (kind_secret(connector, k) && !json_is_null(v))
            json_object_set_new(settings, k, json_string(SECRET_MASK));
    }
    redact_settings(settings, 0);
}

static json_t *parse_stored(const char *text)
{
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return j ? j : json_object();
}

static json_t *template_json(const struct cf_template_row *t)
{
    json_t *settings = parse_stored(t->settings);
    mask_settings(settings, t->connector);
    json_t *o = json_object();
    set(o, "id", jid(t->id));
    set(o, "tenantId", jstr(t->tenant_id));
    set(o, "name", jstr(t->name));
    set(o, "connector", jstr(t->connector));
    set(o, "settings", settings);
    set(o, "procedure", parse_stored(t->procedure));
    set(o, "createdAt", jtime(t->created_at));
    set(o, "updatedAt", jtime(t->updated_at));
    return o;
}

static int add_template(void *arg, const struct cf_template_row *t)
{
    json_array_append_new(arg, template_json(t));
    return 0;
}

static void h_templates(struct cf_api_request *r)
{
    char tbuf[QBUF];
    int q = cf_http_query_param(r->http, "tenantId", tbuf, sizeof tbuf);
    const char *only = NULL;
    if (q == 0 && !(only = request_tenant(r, tbuf, tbuf, sizeof tbuf)))
        return;
    const char *const *ids = only ? &only : (const char *const *)r->who.tenants;
    size_t n = only ? 1 : r->who.n_tenants;
    json_t *a = json_array();
    int rc = cf_admin_template_list(cf_api_store(r->api), ids, n, add_template, a);
    if (rc) {
        json_decref(a);
        fail(r, rc, "listing templates");
        return;
    }
    cf_api_respond_json(r, 200, a);
}

static void h_template_get(struct cf_api_request *r)
{
    char tbuf[QBUF];
    const char *tenant = request_tenant(r, NULL, tbuf, sizeof tbuf);
    if (!tenant)
        return;
    struct cf_template_row t;
    int rc = cf_admin_template_get(cf_api_store(r->api), tenant, r->captures[0], &t);
    if (rc) {
        if (rc == CF_ENOENT)
            cf_api_error(r, 404, NULL, "no template '%.64s' in tenant '%.64s'", r->captures[0],
                         tenant);
        else
            fail(r, rc, "reading the template");
        return;
    }
    json_t *o = template_json(&t);
    cf_template_row_free(&t);
    cf_api_respond_json(r, 200, o);
}

/* The connector, settings and procedure of a template body; NULL members are not given. */
struct template_fields {
    const char *connector;
    char *settings;
    char *procedure;
};

static int template_fields(struct cf_api_request *r, json_t *body, struct template_fields *f)
{
    memset(f, 0, sizeof(*f));
    json_t *c = json_object_get(body, "connector");
    json_t *s = json_object_get(body, "settings");
    json_t *p = json_object_get(body, "procedure");
    if (c && !json_is_null(c)) {
        const char *cs = json_is_string(c) ? json_string_value(c) : "";
        if (strcmp(cs, "embedded") != 0 && strcmp(cs, "cmp") != 0 && strcmp(cs, "cm-rest") != 0) {
            cf_api_error(r, 400, NULL, "connector must be embedded, cmp or cm-rest");
            return -1;
        }
        f->connector = cs;
    }
    if ((s && !json_is_null(s) && !json_is_object(s)) ||
        (p && !json_is_null(p) && !json_is_object(p))) {
        cf_api_error(r, 400, NULL, "settings and procedure must be JSON objects");
        return -1;
    }
    if (json_is_object(s))
        f->settings = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
    if (json_is_object(p))
        f->procedure = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    return 0;
}

static void template_fields_free(struct template_fields *f)
{
    free(f->settings);
    free(f->procedure);
}

/* A secret setting given back as "***" keeps its value in `old` (the stored settings text): the
 * client read the template, which shows secrets masked, and wrote it back. */
static void keep_masked(struct template_fields *f, const char *connector, const char *old)
{
    if (!f->settings || !old)
        return;
    json_t *s = json_loads(f->settings, 0, NULL);
    json_t *o = json_loads(old, 0, NULL);
    bool changed = false;
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
    {
        json_t *was = json_object_get(o, k);
        if (json_is_string(v) && strcmp(json_string_value(v), SECRET_MASK) == 0 && was &&
            (kind_secret(connector, k) || secret_name(k))) {
            json_object_set(s, k, was);
            changed = true;
        }
    }
    if (changed) {
        free(f->settings);
        f->settings = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
    }
    json_decref(s);
    json_decref(o);
}

/* Checks the template a write would leave: its connector, settings and procedure (the given ones,
 * else `old`'s, else the defaults) with cf_ca_template_check(). Answers 400 with the field at
 * fault and returns -1 when they do not fit together. */
static int template_check(struct cf_api_request *r, const struct template_fields *f,
                          const struct cf_template_row *old)
{
    const char *connector = f->connector ? f->connector : old ? old->connector : "embedded";
    const char *st = f->settings ? f->settings : old ? old->settings : "{}";
    const char *pt = f->procedure ? f->procedure : old ? old->procedure : "{}";
    json_t *settings = json_loads(st, 0, NULL);
    json_t *procedure = json_loads(pt, 0, NULL);
    char err[512] = "";
    int rc = CF_EINVAL;
    if (!json_is_object(settings) || !json_is_object(procedure))
        cf_errf(err, sizeof err,
                "the stored settings or procedure are not JSON objects; give both");
    else
        rc = cf_ca_template_check(connector, settings, procedure, NULL, err, sizeof err);
    json_decref(settings);
    json_decref(procedure);
    if (rc) {
        cf_api_error(r, 400, NULL, "the template is not valid: %s", err);
        return -1;
    }
    return 0;
}

/* Seals the secret settings of a write before it is stored (ca/connector.h). Answers 500 and
 * returns -1 when it cannot. */
static int template_seal(struct cf_api_request *r, const char *tenant, const char *name,
                         const char *connector, struct template_fields *f)
{
    char *sealed = NULL;
    char err[512];
    if (cf_ca_settings_seal(cf_api_store(r->api), tenant, name, connector, f->settings, &sealed,
                            err, sizeof err) != 0) {
        cf_log(CF_LOG_ERROR, "api/v1: template %s of tenant %s: %s", name, tenant, err);
        cf_api_error(r, 500, NULL, "the template's secret settings cannot be stored: %s", err);
        return -1;
    }
    if (sealed) {
        sodium_memzero(f->settings, strlen(f->settings));
        free(f->settings);
        f->settings = sealed;
    }
    return 0;
}

static void template_answer(struct cf_api_request *r, const char *tenant, const char *name,
                            int status)
{
    struct cf_template_row t;
    int rc = cf_admin_template_get(cf_api_store(r->api), tenant, name, &t);
    if (rc) {
        fail(r, rc, "reading the template back");
        return;
    }
    json_t *o = template_json(&t);
    cf_template_row_free(&t);
    cf_api_respond_json(r, status, o);
}

static void h_template_create(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    char tbuf[QBUF];
    struct template_fields f = {0};
    json_t *tj = json_object_get(body, "tenantId");
    json_t *nj = json_object_get(body, "name");
    const char *tenant =
        request_tenant(r, json_is_string(tj) ? json_string_value(tj) : NULL, tbuf, sizeof tbuf);
    if (!tenant)
        goto out;
    const char *name = json_is_string(nj) ? json_string_value(nj) : NULL;
    if (!name_ok(name) || strchr(name, '/')) {
        cf_api_error(r, 400, NULL, "name must be 1 to %d printable characters without '/'",
                     MAX_NAME);
        goto out;
    }
    if (template_fields(r, body, &f) || template_check(r, &f, NULL) ||
        template_seal(r, tenant, name, f.connector ? f.connector : "embedded", &f))
        goto out;
    int64_t id;
    int rc = cf_admin_template_create(cf_api_store(r->api), tenant, name, f.connector, f.settings,
                                      f.procedure, cf_now_ms(), &id);
    if (rc == CF_EEXIST)
        cf_api_error(r, 409, NULL, "tenant '%.64s' already has a template '%.64s'", tenant, name);
    else if (rc == CF_ENOENT)
        cf_api_error(r, 404, NULL, "tenant '%.64s' does not exist", tenant);
    else if (rc)
        fail(r, rc, "creating the template");
    else
        template_answer(r, tenant, name, 201);
out:
    template_fields_free(&f);
    json_decref(body);
}

static void h_template_put(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    char tbuf[QBUF];
    struct template_fields f = {0};
    const char *tenant = request_tenant(r, NULL, tbuf, sizeof tbuf);
    if (!tenant || template_fields(r, body, &f))
        goto out;
    struct cf_template_row old;
    int rc = cf_admin_template_get(cf_api_store(r->api), tenant, r->captures[0], &old);
    if (rc == CF_ENOENT) {
        cf_api_error(r, 404, NULL, "no template '%.64s' in tenant '%.64s'", r->captures[0], tenant);
        goto out;
    }
    if (rc) {
        fail(r, rc, "reading the template");
        goto out;
    }
    keep_masked(&f, f.connector ? f.connector : old.connector, old.settings);
    rc = template_check(r, &f, &old) || template_seal(r, tenant, r->captures[0],
                                                      f.connector ? f.connector : old.connector, &f)
             ? -1
             : 0;
    cf_template_row_free(&old);
    if (rc)
        goto out;
    rc = cf_admin_template_update(cf_api_store(r->api), tenant, r->captures[0], f.connector,
                                  f.settings, f.procedure, cf_now_ms());
    if (rc == CF_ENOENT)
        cf_api_error(r, 404, NULL, "no template '%.64s' in tenant '%.64s'", r->captures[0], tenant);
    else if (rc)
        fail(r, rc, "updating the template");
    else
        template_answer(r, tenant, r->captures[0], 200);
out:
    template_fields_free(&f);
    json_decref(body);
}

static void h_template_delete(struct cf_api_request *r)
{
    char tbuf[QBUF];
    const char *tenant = request_tenant(r, NULL, tbuf, sizeof tbuf);
    if (!tenant)
        return;
    int rc = cf_admin_template_delete(cf_api_store(r->api), tenant, r->captures[0]);
    if (rc == CF_ENOENT)
        cf_api_error(r, 404, NULL, "no template '%.64s' in tenant '%.64s'", r->captures[0], tenant);
    else if (rc == CF_ESTATE)
        cf_api_error(r, 409, NULL, "certificates still refer to template '%.64s'", r->captures[0]);
    else if (rc)
        fail(r, rc, "deleting the template");
    else
        cf_api_no_content(r);
}

/* ---- users --------------------------------------------------------------------------------- */

struct proc_grant {
    json_t *a;
};

static int add_grant(void *arg, const char *tenant_id, const char *process_key)
{
    json_array_append_new(
        arg, json_pack("{s:o, s:o}", "tenantId", jstr(tenant_id), "processKey", jstr(process_key)));
    return 0;
}

/* A user as the API shows it: never the hash, only whether there is one. */
static json_t *user_json(struct cf_store *st, const struct cf_user_row *u)
{
    char **tenants = NULL;
    size_t n = 0;
    json_t *ta = json_array(), *pa = json_array();
    if (cf_admin_user_tenants(st, u->id, &tenants, &n) == 0)
        for (size_t i = 0; i < n; i++)
            json_array_append_new(ta, jstr(tenants[i]));
    cf_admin_strings_free(tenants, n);
    cf_admin_user_processes(st, u->id, add_grant, pa);
    json_t *o = json_object();
    set(o, "id", jid(u->id));
    set(o, "name", jstr(u->name));
    set(o, "admin", json_boolean(u->admin));
    set(o, "hasPassword", json_boolean(u->password_hash != NULL));
    set(o, "certIssuer", jstr(u->cert_issuer));
    set(o, "certSubject", jstr(u->cert_subject));
    set(o, "tenants", ta);
    set(o, "processes", pa);
    set(o, "createdAt", jtime(u->created_at));
    return o;
}

/* Whether the caller may see a user: itself, or a user sharing one of its tenants. */
static bool user_visible(struct cf_api_request *r, int64_t user_id)
{
    if (user_id == r->who.user_id)
        return true;
    char **tenants = NULL;
    size_t n = 0;
    bool shared = false;
    if (cf_admin_user_tenants(cf_api_store(r->api), user_id, &tenants, &n) == 0)
        for (size_t i = 0; i < n && !shared; i++)
            shared = cf_principal_has_tenant(&r->who, tenants[i]);
    cf_admin_strings_free(tenants, n);
    return shared;
}

struct user_list {
    struct cf_api_request *r;
    json_t *a;
};

static int add_user(void *arg, const struct cf_user_row *u)
{
    struct user_list *ul = arg;
    if (user_visible(ul->r, u->id))
        json_array_append_new(ul->a, user_json(cf_api_store(ul->r->api), u));
    return 0;
}

static void h_users(struct cf_api_request *r)
{
    struct user_list ul = {r, json_array()};
    int rc = cf_admin_user_list(cf_api_store(r->api), add_user, &ul);
    if (rc) {
        json_decref(ul.a);
        fail(r, rc, "listing users");
        return;
    }
    cf_api_respond_json(r, 200, ul.a);
}

/* The user a route names, if visible to the caller; answers 404 otherwise. */
static int route_user(struct cf_api_request *r, struct cf_user_row *u)
{
    int64_t id;
    memset(u, 0, sizeof(*u));
    if (parse_id(r->captures[0], &id) == 0 && user_visible(r, id) &&
        cf_admin_user_get(cf_api_store(r->api), id, u) == 0)
        return 0;
    cf_api_error(r, 404, NULL, "no user with id %.64s", r->captures[0]);
    return -1;
}

static void h_user_get(struct cf_api_request *r)
{
    struct cf_user_row u;
    if (route_user(r, &u))
        return;
    json_t *o = user_json(cf_api_store(r->api), &u);
    cf_user_row_free(&u);
    cf_api_respond_json(r, 200, o);
}

/* A create or update, carried from the request through hashing and the transaction. */
struct user_change {
    uv_work_t work;
    struct cf_api_request *r;
    int64_t user_id; /* 0: create */
    char *name;
    char *password;
    char hash[CF_PASSWORD_HASH_LEN];
    int hash_rc;
    int admin; /* -1: unchanged */
    bool set_cert;
    char *cert_issuer;
    char *cert_subject;
    char **tenants; /* NULL: unchanged; all within the caller's */
    size_t n_tenants;
    char **grant_tenants; /* process grants (tenant, key), replacing those in the caller's */
    char **grant_keys;
    size_t n_grants;
    bool set_grants;
    char **caller_tenants; /* copy: the request is answered from the done callback */
    size_t n_caller_tenants;
    bool create;
    int status; /* of a refusal found inside the transaction, or 0 */
    char err[256];
};

static void strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void change_free(struct user_change *c)
{
    free(c->name);
    if (c->password) {
        sodium_memzero(c->password, strlen(c->password));
        free(c->password);
    }
    sodium_memzero(c->hash, sizeof c->hash);
    free(c->cert_issuer);
    free(c->cert_subject);
    strings_free(c->tenants, c->n_tenants);
    strings_free(c->grant_tenants, c->n_grants);
    strings_free(c->grant_keys, c->n_grants);
    strings_free(c->caller_tenants, c->n_caller_tenants);
    free(c);
}

static bool caller_has(const struct user_change *c, const char *tenant)
{
    for (size_t i = 0; i < c->n_caller_tenants; i++)
        if (strcmp(c->caller_tenants[i], tenant) == 0)
            return true;
    return false;
}

struct grant_walk {
    struct user_change *c;
    struct cf_store *st;
    char **t;
    char **k;
    size_t n;
};

static int collect_grant(void *arg, const char *tenant_id, const char *process_key)
{
    struct grant_walk *g = arg;
    if (!caller_has(g->c, tenant_id))
        return 0;
    g->t = cf_xrealloc(g->t, (g->n + 1) * sizeof(*g->t));
    g->k = cf_xrealloc(g->k, (g->n + 1) * sizeof(*g->k));
    g->t[g->n] = cf_xstrdup(tenant_id);
    g->k[g->n] = cf_xstrdup(process_key);
    g->n++;
    return 0;
}

/* Runs inside the engine's batch transaction (its own savepoint). */
static int user_tx(struct cf_engine *e, void *arg)
{
    struct user_change *c = arg;
    struct cf_store *st = cf_engine_store(e);
    int rc = 0;
    if (c->create) {
        rc = cf_admin_user_create(st, c->name, c->password ? c->hash : NULL, c->admin == 1,
                                  cf_now_ms(), &c->user_id);
        if (rc == CF_EEXIST) {
            c->status = 409;
            snprintf(c->err, sizeof c->err, "a user named '%.64s' exists", c->name);
            return rc;
        }
    } else {
        if (!rc && c->password)
            rc = cf_admin_user_set_password(st, c->user_id, c->hash);
        if (!rc && c->admin >= 0)
            rc = cf_admin_user_set_admin(st, c->user_id, c->admin == 1);
    }
    if (!rc && c->set_cert) {
        rc = cf_admin_user_set_cert(st, c->user_id, c->cert_issuer, c->cert_subject);
        if (rc == CF_EEXIST) {
            c->status = 409;
            snprintf(c->err, sizeof c->err, "that certificate is mapped to another user");
            return rc;
        }
    }
    if (!rc && c->tenants) {
        /* Memberships in the caller's tenants become exactly the list; others stay. */
        char **have = NULL;
        size_t n_have = 0;
        rc = cf_admin_user_tenants(st, c->user_id, &have, &n_have);
        for (size_t i = 0; !rc && i < n_have; i++) {
            bool keep = !caller_has(c, have[i]);
            for (size_t k = 0; !keep && k < c->n_tenants; k++)
                keep = strcmp(have[i], c->tenants[k]) == 0;
            if (!keep)
                rc = cf_admin_user_remove_tenant(st, c->user_id, have[i]);
        }
        cf_admin_strings_free(have, n_have);
        for (size_t i = 0; !rc && i < c->n_tenants; i++)
            rc = cf_admin_user_add_tenant(st, c->user_id, c->tenants[i]);
    }
    if (!rc && c->set_grants) {
        struct grant_walk g = {.c = c, .st = st};
        rc = cf_admin_user_processes(st, c->user_id, collect_grant, &g);
        for (size_t i = 0; !rc && i < g.n; i++)
            rc = cf_admin_user_disallow_process(st, c->user_id, g.t[i], g.k[i]);
        strings_free(g.t, g.n);
        strings_free(g.k, g.n);
        for (size_t i = 0; !rc && i < c->n_grants; i++)
            rc = cf_admin_user_allow_process(st, c->user_id, c->grant_tenants[i], c->grant_keys[i]);
    }
    if (rc && !c->status) {
        c->status = rc == CF_ENOENT ? 404 : 0;
        snprintf(c->err, sizeof c->err, "%s",
                 rc == CF_ENOENT ? "user or tenant does not exist" : cf_strerror(rc));
    }
    return rc;
}

static void user_done(void *arg, int rc)
{
    struct user_change *c = arg;
    struct cf_api_request *r = c->r;
    if (rc) {
        if (c->status)
            cf_api_error(r, c->status, NULL, "%s", c->err);
        else
            fail(r, rc, "storing the user");
    } else {
        struct cf_user_row u;
        if (cf_admin_user_get(cf_api_store(r->api), c->user_id, &u) != 0) {
            fail(r, CF_ENOENT, "reading the user back");
        } else {
            cf_log(CF_LOG_INFO, "api/v1: user=%s %s user=%s", r->who.name,
                   c->create ? "created" : "changed", u.name);
            json_t *o = user_json(cf_api_store(r->api), &u);
            cf_user_row_free(&u);
            cf_api_respond_json(r, c->create ? 201 : 200, o);
        }
    }
    change_free(c);
}

static void hash_work(uv_work_t *w)
{
    struct user_change *c = cf_container_of(w, struct user_change, work);
    c->hash_rc = cf_admin_password_hash(c->password, c->hash);
}

static void hash_done(uv_work_t *w, int status)
{
    struct user_change *c = cf_container_of(w, struct user_change, work);
    if (status != 0 || c->hash_rc != 0) {
        cf_api_error(c->r, 503, NULL, "the password cannot be hashed now");
        change_free(c);
        return;
    }
    cf_engine_submit(cf_api_engine(c->r->api), user_tx, user_done, c);
}

/* Reads a list of strings, each of which must be one of the caller's tenants. */
static int tenant_list(struct cf_api_request *r, json_t *a, struct user_change *c)
{
    if (!json_is_array(a)) {
        cf_api_error(r, 400, NULL, "tenants must be an array of tenant ids");
        return -1;
    }
    c->tenants = cf_xcalloc(json_array_size(a) + 1, sizeof(*c->tenants));
    size_t i;
    json_t *t;
    json_array_foreach(a, i, t)
    {
        const char *s = json_is_string(t) ? json_string_value(t) : NULL;
        if (!s || !cf_principal_has_tenant(&r->who, s)) {
            cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'", r->who.name,
                         s ? s : "?");
            return -1;
        }
        c->tenants[c->n_tenants++] = cf_xstrdup(s);
    }
    return 0;
}

static int grant_list(struct cf_api_request *r, json_t *a, struct user_change *c)
{
    if (!json_is_array(a)) {
        cf_api_error(r, 400, NULL, "processes must be an array of {tenantId, processKey}");
        return -1;
    }
    size_t n = json_array_size(a) + 1;
    c->grant_tenants = cf_xcalloc(n, sizeof(char *));
    c->grant_keys = cf_xcalloc(n, sizeof(char *));
    c->set_grants = true;
    size_t i;
    json_t *g;
    json_array_foreach(a, i, g)
    {
        json_t *t = json_object_get(g, "tenantId"), *k = json_object_get(g, "processKey");
        if (!json_is_string(t) || !json_is_string(k) || !name_ok(json_string_value(k))) {
            cf_api_error(r, 400, NULL, "processes must be an array of {tenantId, processKey}");
            return -1;
        }
        if (!cf_principal_has_tenant(&r->who, json_string_value(t))) {
            cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'", r->who.name,
                         json_string_value(t));
            return -1;
        }
        c->grant_tenants[c->n_grants] = cf_xstrdup(json_string_value(t));
        c->grant_keys[c->n_grants] = cf_xstrdup(json_string_value(k));
        c->n_grants++;
    }
    return 0;
}

/* Reads the members a create or update may carry. */
static int change_fields(struct cf_api_request *r, json_t *body, struct user_change *c)
{
    json_t *pw = json_object_get(body, "password");
    json_t *adm = json_object_get(body, "admin");
    json_t *ci = json_object_get(body, "certIssuer"), *cs = json_object_get(body, "certSubject");
    json_t *ten = json_object_get(body, "tenants"), *procs = json_object_get(body, "processes");
    c->admin = -1;
    if (pw && !json_is_null(pw)) {
        size_t n = json_is_string(pw) ? json_string_length(pw) : 0;
        if (n < MIN_PASSWORD || n > MAX_PASSWORD || n != strlen(json_string_value(pw))) {
            cf_api_error(r, 400, NULL, "password must be a string of %d to %d characters",
                         MIN_PASSWORD, MAX_PASSWORD);
            return -1;
        }
        c->password = cf_xstrdup(json_string_value(pw));
    }
    if (adm && !json_is_null(adm)) {
        if (!json_is_boolean(adm)) {
            cf_api_error(r, 400, NULL, "admin must be true or false");
            return -1;
        }
        c->admin = json_is_true(adm);
    }
    if (ci || cs) {
        bool clear = json_is_null(ci) && json_is_null(cs);
        if (!clear && (!json_is_string(ci) || !json_is_string(cs) || !json_string_length(ci) ||
                       !json_string_length(cs))) {
            cf_api_error(r, 400, NULL,
                         "certIssuer and certSubject go together (RFC 2253 DNs), or both null");
            return -1;
        }
        c->set_cert = true;
        c->cert_issuer = clear ? NULL : cf_xstrdup(json_string_value(ci));
        c->cert_subject = clear ? NULL : cf_xstrdup(json_string_value(cs));
    }
    if (ten && tenant_list(r, ten, c))
        return -1;
    if (procs && grant_list(r, procs, c))
        return -1;
    c->caller_tenants = cf_xcalloc(r->who.n_tenants + 1, sizeof(char *));
    for (size_t i = 0; i < r->who.n_tenants; i++)
        c->caller_tenants[c->n_caller_tenants++] = cf_xstrdup(r->who.tenants[i]);
    return 0;
}

static void start_change(struct cf_api_request *r, struct user_change *c)
{
    c->r = r;
    if (c->password) {
        /* argon2id takes tens of milliseconds: off the loop thread. */
        int rc = uv_queue_work(cf__api_loop(r->api), &c->work, hash_work, hash_done);
        if (rc) {
            cf_api_error(r, 503, NULL, "the password cannot be hashed now");
            change_free(c);
        }
        return;
    }
    cf_engine_submit(cf_api_engine(r->api), user_tx, user_done, c);
}

static void h_user_create(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    struct user_change *c = cf_xcalloc(1, sizeof(*c));
    json_t *nj = json_object_get(body, "name");
    const char *name = json_is_string(nj) ? json_string_value(nj) : NULL;
    if (!name_ok(name) || strchr(name, ':')) {
        cf_api_error(r, 400, NULL, "name must be 1 to %d printable characters without ':'",
                     MAX_NAME);
        goto bad;
    }
    c->name = cf_xstrdup(name);
    if (change_fields(r, body, c))
        goto bad;
    if (!c->n_tenants) {
        cf_api_error(r, 400, NULL, "a new user needs at least one of your tenants in tenants");
        goto bad;
    }
    if (!c->password && !c->set_cert) {
        cf_api_error(r, 400, NULL, "a new user needs a password or a certificate mapping");
        goto bad;
    }
    c->create = true;
    json_decref(body);
    start_change(r, c);
    return;
bad:
    change_free(c);
    json_decref(body);
}

static void h_user_put(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    struct cf_user_row u;
    if (route_user(r, &u)) {
        json_decref(body);
        return;
    }
    struct user_change *c = cf_xcalloc(1, sizeof(*c));
    c->user_id = u.id;
    cf_user_row_free(&u);
    if (change_fields(r, body, c)) {
        change_free(c);
        json_decref(body);
        return;
    }
    if (c->user_id == r->who.user_id && c->admin == 0) {
        cf_api_error(r, 409, NULL, "an admin cannot take its own admin role");
        change_free(c);
        json_decref(body);
        return;
    }
    json_decref(body);
    start_change(r, c);
}

static void h_user_delete(struct cf_api_request *r)
{
    struct cf_user_row u;
    if (route_user(r, &u))
        return;
    int64_t id = u.id;
    cf_user_row_free(&u);
    if (id == r->who.user_id) {
        cf_api_error(r, 409, NULL, "an admin cannot delete itself");
        return;
    }
    int rc = cf_admin_user_delete(cf_api_store(r->api), id);
    if (rc == CF_ENOENT)
        cf_api_error(r, 404, NULL, "no user with id %" PRId64, id);
    else if (rc)
        fail(r, rc, "deleting the user");
    else
        cf_api_no_content(r);
}

/* ---- certificates -------------------------------------------------------------------------- */

static json_t *cert_json(const struct cf_cert_row *c, bool with_der)
{
    json_t *o = json_object();
    set(o, "id", jid(c->id));
    set(o, "tenantId", jstr(c->tenant_id));
    set(o, "template", jstr(c->template_name));
    set(o, "serial", jstr(c->serial));
    set(o, "issuer", jstr(c->issuer));
    set(o, "subject", jstr(c->subject));
    set(o, "notBefore", jtime(c->not_before));
    set(o, "notAfter", jtime(c->not_after));
    set(o, "sha256", jstr(c->sha256));
    set(o, "status", jstr(c->status));
    set(o, "source", jstr(c->source));
    set(o, "processInstanceId", jid(c->instance_id));
    set(o, "createdAt", jtime(c->created_at));
    if (with_der && c->der) {
        size_t n = sodium_base64_ENCODED_LEN(c->der_len, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = cf_xmalloc(n);
        sodium_bin2base64(b64, n, c->der, c->der_len, sodium_base64_VARIANT_ORIGINAL);
        set(o, "der", json_string(b64));
        free(b64);
    }
    return o;
}

static int add_cert(void *arg, const struct cf_cert_row *c)
{
    json_array_append_new(arg, cert_json(c, false));
    return 0;
}

/* Reads an optional query parameter into `buf`; NULL when absent. -1 in *bad when answered. */
static const char *opt_param(struct cf_api_request *r, const char *name, char *buf, size_t len,
                             int *bad)
{
    int rc = cf_http_query_param(r->http, name, buf, len);
    if (rc == CF_ELIMIT) {
        cf_api_error(r, 400, NULL, "query parameter %s is too long", name);
        *bad = -1;
        return NULL;
    }
    return rc == 0 ? buf : NULL;
}

static int time_param(struct cf_api_request *r, const char *name, uint64_t *out, int *bad)
{
    char b[64];
    const char *v = opt_param(r, name, b, sizeof b, bad);
    if (!v)
        return 0;
    int64_t ms;
    if (cf_iso_parse_datetime(v, &ms, NULL, 0) != 0 || ms < 0) {
        cf_api_error(r, 400, NULL, "%s must be an ISO 8601 date-time", name);
        *bad = -1;
        return -1;
    }
    *out = (uint64_t)ms;
    return 0;
}

static void certificates(struct cf_api_request *r, bool count)
{
    char tenant[QBUF], tpl[QBUF], serial[QBUF], subject[QBUF], issuer[QBUF], sha[QBUF], status[64],
        num[64];
    int bad = 0;
    struct cf_cert_filter f = {0};
    f.tenant_id = opt_param(r, "tenantId", tenant, sizeof tenant, &bad);
    if (!bad)
        f.template_name = opt_param(r, "template", tpl, sizeof tpl, &bad);
    if (!bad)
        f.serial = opt_param(r, "serial", serial, sizeof serial, &bad);
    if (!bad)
        f.subject_like = opt_param(r, "subject", subject, sizeof subject, &bad);
    if (!bad)
        f.issuer = opt_param(r, "issuer", issuer, sizeof issuer, &bad);
    if (!bad)
        f.sha256 = opt_param(r, "sha256", sha, sizeof sha, &bad);
    if (!bad)
        f.status = opt_param(r, "status", status, sizeof status, &bad);
    if (!bad)
        time_param(r, "expiresBefore", &f.expires_before, &bad);
    if (!bad)
        time_param(r, "expiresAfter", &f.expires_after, &bad);
    f.max_results = MAX_RESULTS;
    const char *v;
    int64_t l;
    if (!bad && (v = opt_param(r, "firstResult", num, sizeof num, &bad))) {
        if (cf_parse_i64(v, &l) || l < 0) {
            cf_api_error(r, 400, NULL, "firstResult must be a number >= 0");
            return;
        }
        f.first_result = l;
    }
    if (!bad && (v = opt_param(r, "maxResults", num, sizeof num, &bad))) {
        if (cf_parse_i64(v, &l) || l < 0 || l > MAX_RESULTS) {
            cf_api_error(r, 400, NULL, "maxResults must be a number from 0 to %d", MAX_RESULTS);
            return;
        }
        f.max_results = l;
    }
    if (bad)
        return;
    if (f.tenant_id && !cf_principal_has_tenant(&r->who, f.tenant_id)) {
        cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'", r->who.name,
                     f.tenant_id);
        return;
    }
    struct cf_store *st = cf_api_store(r->api);
    const char *const *ids = (const char *const *)r->who.tenants;
    if (count) {
        int64_t n = 0;
        int rc = cf_admin_cert_count(st, ids, r->who.n_tenants, &f, &n);
        if (rc)
            fail(r, rc, "counting certificates");
        else
            cf_api_respond_json(r, 200, json_pack("{s:I}", "count", (json_int_t)n));
        return;
    }
    if (f.max_results == 0) {
        /* The store reads 0 as "no limit"; an explicit 0 asks for none. */
        cf_api_respond_json(r, 200, json_array());
        return;
    }
    json_t *a = json_array();
    int rc = cf_admin_cert_list(st, ids, r->who.n_tenants, &f, add_cert, a);
    if (rc) {
        json_decref(a);
        fail(r, rc, "listing certificates");
        return;
    }
    cf_api_respond_json(r, 200, a);
}

static void h_certs(struct cf_api_request *r)
{
    certificates(r, false);
}

static void h_cert_count(struct cf_api_request *r)
{
    certificates(r, true);
}

static int route_cert(struct cf_api_request *r, struct cf_cert_row *c)
{
    int64_t id;
    memset(c, 0, sizeof(*c));
    if (parse_id(r->captures[0], &id) == 0 &&
        cf_admin_cert_get(cf_api_store(r->api), (const char *const *)r->who.tenants,
                          r->who.n_tenants, id, true, c) == 0)
        return 0;
    cf_api_error(r, 404, NULL, "no certificate with id %.64s", r->captures[0]);
    return -1;
}

static void h_cert_get(struct cf_api_request *r)
{
    struct cf_cert_row c;
    if (route_cert(r, &c))
        return;
    json_t *o = cert_json(&c, true);
    cf_cert_row_free(&c);
    cf_api_respond_json(r, 200, o);
}

/* PEM: the Base64 of the DER in lines of 64 between the armour lines (RFC 7468). */
static void h_cert_pem(struct cf_api_request *r)
{
    struct cf_cert_row c;
    if (route_cert(r, &c))
        return;
    size_t n = sodium_base64_ENCODED_LEN(c.der_len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = cf_xmalloc(n);
    sodium_bin2base64(b64, n, c.der, c.der_len, sodium_base64_VARIANT_ORIGINAL);
    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_puts(&b, "-----BEGIN CERTIFICATE-----\n");
    size_t len = strlen(b64);
    for (size_t i = 0; i < len; i += 64) {
        cf_buf_append(&b, b64 + i, len - i < 64 ? len - i : 64);
        cf_buf_putc(&b, '\n');
    }
    cf_buf_puts(&b, "-----END CERTIFICATE-----\n");
    free(b64);
    cf_cert_row_free(&c);
    cf_api_respond(r, 200, "application/x-pem-file", b.data, b.len);
    cf_buf_free(&b);
}

static void h_cert_der(struct cf_api_request *r)
{
    struct cf_cert_row c;
    if (route_cert(r, &c))
        return;
    cf_api_respond(r, 200, "application/pkix-cert", c.der, c.der_len);
    cf_cert_row_free(&c);
}

/* ---- incidents ----------------------------------------------------------------------------- */

static int found_incident(void *arg, const struct cf_incident_row *i, const char *tenant,
                          int64_t def_id)
{
    (void)tenant;
    (void)def_id;
    *(int64_t *)arg = i->id;
    return 0;
}

/* POST /api/v1/incidents/{id}/retry {retries}: any incident, not only a failed job (which is
 * all Camunda's PUT /job/{id}/retries can reach): the engine re-executes the activity where it
 * stopped. */
static void h_incident_retry(struct cf_api_request *r)
{
    int64_t id, found = 0, retries = 1;
    struct cf_tenants t = {(const char *const *)r->who.tenants, r->who.n_tenants};
    struct cf_incident_filter f = {.open_only = true, .max = 1};
    if (parse_id(r->captures[0], &f.incident_id) ||
        cf_query_incidents(cf_api_store(r->api), &t, &f, found_incident, &found) != 0 || !found) {
        cf_api_error(r, 404, NULL, "no open incident with id %.64s", r->captures[0]);
        return;
    }
    id = found;
    if (r->http->body_len) {
        json_t *body = body_object(r);
        if (!body)
            return;
        json_t *rj = json_object_get(body, "retries");
        if (rj &&
            (!json_is_integer(rj) || json_integer_value(rj) < 1 || json_integer_value(rj) > 1000)) {
            json_decref(body);
            cf_api_error(r, 400, NULL, "retries must be an integer from 1 to 1000");
            return;
        }
        if (rj)
            retries = json_integer_value(rj);
        json_decref(body);
    }
    char err[512];
    int rc = cf_engine_retry_incident(cf_api_engine(r->api), id, (int)retries, err, sizeof err);
    if (rc == CF_ENOENT || rc == CF_ESTATE)
        cf_api_error(r, 409, NULL, "%s", err);
    else if (rc)
        fail(r, rc, "retrying the incident");
    else
        cf_api_no_content(r);
}

/* ---- registration -------------------------------------------------------------------------- */

#define V1 "/api/v1"
#define JSON_LIMIT (256u * 1024u)

static const struct cf_route routes[] = {
    {"GET", V1 "/params/{key}", h_params_key, CF_ROUTE_ADMIN, 0},
    {"GET", V1 "/params/{key}/{activity}", h_params_activity, CF_ROUTE_ADMIN, 0},
    {"GET", V1 "/params/{key}/{activity}/{name}", h_param_get, CF_ROUTE_ADMIN, 0},
    {"PUT", V1 "/params/{key}/{activity}/{name}", h_param_put, CF_ROUTE_ADMIN, JSON_LIMIT},
    {"DELETE", V1 "/params/{key}/{activity}/{name}", h_param_delete, CF_ROUTE_ADMIN, 0},
    {"GET", V1 "/templates", h_templates, 0, 0},
    {"POST", V1 "/templates", h_template_create, CF_ROUTE_ADMIN, JSON_LIMIT},
    {"GET", V1 "/templates/{name}", h_template_get, 0, 0},
    {"PUT", V1 "/templates/{name}", h_template_put, CF_ROUTE_ADMIN, JSON_LIMIT},
    {"DELETE", V1 "/templates/{name}", h_template_delete, CF_ROUTE_ADMIN, 0},
    {"GET", V1 "/users", h_users, CF_ROUTE_ADMIN, 0},
    {"POST", V1 "/users", h_user_create, CF_ROUTE_ADMIN, 0},
    {"GET", V1 "/users/{id}", h_user_get, CF_ROUTE_ADMIN, 0},
    {"PUT", V1 "/users/{id}", h_user_put, CF_ROUTE_ADMIN, 0},
    {"DELETE", V1 "/users/{id}", h_user_delete, CF_ROUTE_ADMIN, 0},
    {"POST", V1 "/incidents/{id}/retry", h_incident_retry, CF_ROUTE_ADMIN, 0},
    {"GET", V1 "/certificates", h_certs, 0, 0},
    {"GET", V1 "/certificates/count", h_cert_count, 0, 0},
    {"GET", V1 "/certificates/{id}", h_cert_get, 0, 0},
    {"GET", V1 "/certificates/{id}/pem", h_cert_pem, 0, 0},
    {"GET", V1 "/certificates/{id}/der", h_cert_der, 0, 0},
};

void cf_api_v1_routes(struct cf_api *api)
{
    cf_api_register(api, routes, CF_ARRAY_LEN(routes));
}
