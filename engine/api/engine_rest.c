/*
 * The Camunda 7 REST subset under /engine-rest that Camunda Modeler's Deploy and Start buttons and
 * common scripts use (shared/reference/camunda-rest-templates-libs.md §2): version, deployments,
 * process definitions, starting and listing instances, their activity tree and variables,
 * incidents, job retries, message correlation and history. Shapes follow Camunda's DTOs (ids as
 * strings, dates as yyyy-MM-dd'T'HH:mm:ss.SSSZ, variables as {value, type, valueInfo}, errors as
 * {type, message}), so that scripts written for Camunda work unchanged.
 *
 * What it leaves to others: authentication, tenants and the admin flag are the router's (api.c);
 * every state change is an engine call (run/engine.h); reads go through store/query.h, which
 * matches rows of the caller's tenants only, so an object of another tenant answers 404 exactly
 * like a missing one. Writes that need the engine's lock-step with its caches (deploy, start,
 * cancel, variables, retries, messages) never touch the store directly.
 *
 * Runtime views follow Camunda: /process-instance shows running instances only (an ended one is
 * 404 there) and /history/... shows all. A listing without maxResults returns at most
 * MAX_RESULTS rows, and asking for more is refused, as Camunda does with queryMaxResultsLimit.
 */
#include "api/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "api/multipart.h"
#include "base/imap.h"
#include "base/iso8601.h"
#include "bpmn/model.h"
#include "store/admin.h"
#include "store/query.h"

/* What GET /version reports: the Camunda REST API level this subset follows. */
#define CAMUNDA_VERSION "7.20.0"
#define CERTFLOW_VERSION "0.1.0"

#define JSON_BODY_LIMIT (1024u * 1024u)
#define DEPLOY_BODY_LIMIT (4u * 1024u * 1024u)
#define MAX_RESULTS 10000
#define MAX_FIELD_BYTES 1024
#define MAX_RESOURCE_NAME 255
#define MAX_VAR_NAME 255
#define QBUF 1024

static const char PARSE_PREFIX[] = "ENGINE-09005 Could not parse BPMN process. Errors: ";

/* ---- small helpers ------------------------------------------------------------------------- */

static struct cf_tenants tenants_of(const struct cf_api_request *r)
{
    struct cf_tenants t = {(const char *const *)r->who.tenants, r->who.n_tenants};
    return t;
}

/* Camunda's date format, always in UTC: 2017-04-06T13:57:45.000+0000. */
static void camunda_date(int64_t ms, char out[64])
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, 64, "1970-01-01T00:00:00.000+0000");
        return;
    }
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03d+0000", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}

static json_t *jdate(uint64_t ms)
{
    if (!ms)
        return json_null();
    char b[64];
    camunda_date((int64_t)ms, b);
    return json_string(b);
}

static json_t *jid(int64_t id)
{
    if (!id)
        return json_null();
    char b[24];
    snprintf(b, sizeof b, "%" PRId64, id);
    return json_string(b);
}

/* A string, or null; text that is not UTF-8 (which no row should hold) also becomes null, so
 * that an answer is never invalid JSON. */
static json_t *jstr(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_null();
}

/* certflow's "" is Camunda's tenant null. */
static json_t *jtenant(const char *t)
{
    return t && *t ? jstr(t) : json_null();
}

static void set(json_t *o, const char *k, json_t *v)
{
    json_object_set_new(o, k, v ? v : json_null());
}

/* Camunda ids are strings; certflow's are positive integers. Anything else is not found. */
static int parse_id(const char *s, int64_t *out)
{
    int64_t v;
    if (!s || !*s || s[0] == '+' || s[0] == '-' || cf_parse_i64(s, &v) != 0 || v <= 0)
        return CF_EINVAL;
    *out = v;
    return 0;
}

/* Store and engine failures: overload and full disks are 503 (retry later), the rest 500. */
static void fail(struct cf_api_request *r, int rc, const char *what)
{
    int status = rc == CF_EBUSY || rc == CF_EFULL || rc == CF_EIO ? 503 : 500;
    cf_log(CF_LOG_WARN, "engine-rest: %s failed: %s", what, cf_strerror(rc));
    cf_api_error(r, status, NULL, "%s failed: %s", what, cf_strerror(rc));
}

/* The base of links in answers: scheme from the listener, authority from Host. */
static char *base_url(const struct cf_api_request *r)
{
    const char *host = cf_http_header(r->http, "Host");
    bool ok = host && *host && strlen(host) < 256;
    for (const char *p = host; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && *p != '"' && *p != '\\' && (unsigned char)*p < 0x7f;
    return cf_xasprintf("%s://%s/engine-rest",
                        r->http->listener == CF_LISTEN_PLAIN ? "http" : "https",
                        ok ? host : "localhost");
}

static json_t *self_link(const struct cf_api_request *r, const char *what, int64_t id)
{
    char *base = base_url(r);
    char *href = cf_xasprintf("%s/%s/%" PRId64, base, what, id);
    json_t *l = json_pack("[{s:s, s:s, s:s}]", "method", "GET", "href", href, "rel", "self");
    free(base);
    free(href);
    return l;
}

/* ---- query parameters ---------------------------------------------------------------------- */

/* 0 with the value, 1 when absent, -1 when the request was answered (too long). */
static int qparam(struct cf_api_request *r, const char *name, char *out, size_t outlen)
{
    int rc = cf_http_query_param(r->http, name, out, outlen);
    if (rc == 0)
        return 0;
    if (rc == CF_ENOENT)
        return 1;
    cf_api_error(r, 400, NULL, "query parameter %s is too long", name);
    return -1;
}

/* An integer parameter; `*out` keeps its default when absent. -1 when answered. */
static int qint(struct cf_api_request *r, const char *name, int64_t min, int64_t max, int64_t *out)
{
    char b[64];
    int rc = qparam(r, name, b, sizeof b);
    if (rc)
        return rc < 0 ? -1 : 0;
    int64_t v;
    if (cf_parse_i64(b, &v) != 0 || v < min || v > max) {
        cf_api_error(r, 400, NULL, "Cannot set query parameter '%s' to value '%.32s'", name, b);
        return -1;
    }
    *out = v;
    return 0;
}

static int qbool(struct cf_api_request *r, const char *name, bool *out)
{
    char b[16];
    int rc = qparam(r, name, b, sizeof b);
    if (rc)
        return rc < 0 ? -1 : 0;
    if (strcmp(b, "true") != 0 && strcmp(b, "false") != 0) {
        cf_api_error(r, 400, NULL, "Cannot set query parameter '%s' to value '%.15s'", name, b);
        return -1;
    }
    *out = strcmp(b, "true") == 0;
    return 0;
}

/* firstResult and maxResults. */
static int qpage(struct cf_api_request *r, int64_t *first, int64_t *max)
{
    *first = 0;
    *max = MAX_RESULTS;
    if (qint(r, "firstResult", 0, INT32_MAX, first) || qint(r, "maxResults", 0, INT32_MAX, max))
        return -1;
    if (*max > MAX_RESULTS) {
        cf_api_error(r, 400, NULL, "Max results limit of %d exceeded!", MAX_RESULTS);
        return -1;
    }
    return 0;
}

/* The tenants a listing covers: the caller's, narrowed by tenantIdIn (a comma-separated list)
 * and withoutTenantId (the tenant ""). A tenant the caller does not belong to is 403, as
 * reliability.md §3.6 asks for a tenant named in a query. */
struct scope {
    const char **ids;
    size_t n;
    char *buf;
};

static void scope_free(struct scope *sc)
{
    free(sc->ids);
    free(sc->buf);
    memset(sc, 0, sizeof(*sc));
}

static struct cf_tenants scope_tenants(const struct scope *sc)
{
    struct cf_tenants t = {sc->ids, sc->n};
    return t;
}

static int scope_from_query(struct cf_api_request *r, struct scope *sc)
{
    memset(sc, 0, sizeof(*sc));
    bool without = false;
    if (qbool(r, "withoutTenantId", &without))
        return -1;
    sc->buf = cf_xmalloc(QBUF);
    int rc = qparam(r, "tenantIdIn", sc->buf, QBUF);
    if (rc < 0) {
        scope_free(sc);
        return -1;
    }
    if (rc == 1 && !without) {
        sc->ids = cf_xcalloc(r->who.n_tenants + 1, sizeof(*sc->ids));
        for (size_t i = 0; i < r->who.n_tenants; i++)
            sc->ids[sc->n++] = r->who.tenants[i];
        return 0;
    }
    size_t cap = 2;
    for (const char *p = sc->buf; rc == 0 && *p; p++)
        cap += *p == ',';
    sc->ids = cf_xcalloc(cap, sizeof(*sc->ids));
    if (rc == 0) {
        char *p = sc->buf;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            if (*p) {
                if (!cf_principal_has_tenant(&r->who, p)) {
                    cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'",
                                 r->who.name, p);
                    scope_free(sc);
                    return -1;
                }
                sc->ids[sc->n++] = p;
            }
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    if (without && cf_principal_has_tenant(&r->who, ""))
        sc->ids[sc->n++] = "";
    return 0;
}

/* ---- request bodies ------------------------------------------------------------------------ */

/* The body as a JSON object; an empty body counts as {}. NULL when answered (400). */
static json_t *body_object(struct cf_api_request *r)
{
    if (!r->http->body_len)
        return json_object();
    json_error_t je;
    json_t *j =
        json_loadb((const char *)r->http->body, r->http->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        cf_api_error(r, 400, NULL, "invalid JSON body at line %d, column %d: %s", je.line,
                     je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        cf_api_error(r, 400, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- variables ----------------------------------------------------------------------------- */

static bool type_is(const char *t, const char *name)
{
    return strcasecmp(t, name) == 0;
}

static int int_from_json(const char *name, const char *tname, json_t *value, int64_t min,
                         int64_t max, int64_t *out, char *err, size_t errlen)
{
    int64_t v;
    if (json_is_integer(value))
        v = json_integer_value(value);
    else if (!json_is_string(value) || cf_parse_i64(json_string_value(value), &v) != 0) {
        cf_errf(err, errlen, "variable '%s': a %s needs an integer value", name, tname);
        return CF_EINVAL;
    }
    if (v < min || v > max) {
        cf_errf(err, errlen, "variable '%s': %" PRId64 " is out of range for %s", name, v, tname);
        return CF_EINVAL;
    }
    *out = v;
    return 0;
}

/* One variable in Camunda's typed form {value, type, valueInfo} into a value. */
static int val_from_json(const char *name, json_t *dto, struct cf_val *out, char *err,
                         size_t errlen)
{
    cf_val_set_null(out);
    if (!json_is_object(dto)) {
        cf_errf(err, errlen, "variable '%s' must be an object with value and type", name);
        return CF_EINVAL;
    }
    json_t *value = json_object_get(dto, "value");
    json_t *type = json_object_get(dto, "type");
    json_t *info = json_object_get(dto, "valueInfo");
    if (info && !json_is_object(info) && !json_is_null(info)) {
        cf_errf(err, errlen, "variable '%s': valueInfo must be an object", name);
        return CF_EINVAL;
    }
    if (type && !json_is_null(type) && !json_is_string(type)) {
        cf_errf(err, errlen, "variable '%s': type must be a string", name);
        return CF_EINVAL;
    }
    const char *t = type && json_is_string(type) ? json_string_value(type) : NULL;
    if (!t) {
        /* Camunda infers the type from the JSON value when none is given. */
        if (!value || json_is_null(value))
            t = "Null";
        else if (json_is_string(value))
            t = "String";
        else if (json_is_integer(value))
            t = "Long";
        else if (json_is_real(value))
            t = "Double";
        else if (json_is_boolean(value))
            t = "Boolean";
        else {
            cf_errf(err, errlen, "variable '%s': give a type (Json) for an object or array value",
                    name);
            return CF_EINVAL;
        }
    }
    bool null = !value || json_is_null(value);
    int64_t l;
    if (type_is(t, "Null") || (null && !type_is(t, "Object"))) {
        return 0;
    } else if (type_is(t, "String")) {
        if (!json_is_string(value)) {
            cf_errf(err, errlen, "variable '%s': a String needs a string value", name);
            return CF_EINVAL;
        }
        cf_val_set_stringn(out, json_string_value(value), json_string_length(value));
    } else if (type_is(t, "Long") || type_is(t, "Integer") || type_is(t, "Short")) {
        int64_t max = type_is(t, "Short")     ? INT16_MAX
                      : type_is(t, "Integer") ? INT32_MAX
                                              : INT64_MAX;
        int64_t min = type_is(t, "Short")     ? INT16_MIN
                      : type_is(t, "Integer") ? INT32_MIN
                                              : INT64_MIN;
        if (int_from_json(name, t, value, min, max, &l, err, errlen))
            return CF_EINVAL;
        cf_val_set_long(out, l);
    } else if (type_is(t, "Double")) {
        double d;
        if (json_is_number(value))
            d = json_number_value(value);
        else if (!json_is_string(value) || cf_parse_double(json_string_value(value), &d) != 0) {
            cf_errf(err, errlen, "variable '%s': a Double needs a number", name);
            return CF_EINVAL;
        }
        cf_val_set_double(out, d);
    } else if (type_is(t, "Boolean")) {
        const char *s = json_is_string(value) ? json_string_value(value) : NULL;
        if (json_is_boolean(value))
            cf_val_set_bool(out, json_is_true(value));
        else if (s && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0))
            cf_val_set_bool(out, strcmp(s, "true") == 0);
        else {
            cf_errf(err, errlen, "variable '%s': a Boolean is true or false", name);
            return CF_EINVAL;
        }
    } else if (type_is(t, "Date")) {
        char derr[256];
        int64_t ms;
        if (!json_is_string(value) ||
            cf_iso_parse_datetime(json_string_value(value), &ms, derr, sizeof derr) != 0) {
            cf_errf(err, errlen,
                    "variable '%s': a Date needs the form yyyy-MM-dd'T'HH:mm:ss.SSSZ, such as "
                    "2017-04-06T13:57:45.000+0200",
                    name);
            return CF_EINVAL;
        }
        cf_val_set_date(out, ms);
    } else if (type_is(t, "Json")) {
        json_t *j;
        if (json_is_string(value)) {
            json_error_t je;
            j = json_loads(json_string_value(value), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
            if (!j) {
                cf_errf(err, errlen, "variable '%s': the Json value does not parse: %s", name,
                        je.text);
                return CF_EINVAL;
            }
        } else {
            j = json_incref(value);
        }
        cf_val_take_json(out, j);
    } else if (type_is(t, "Bytes")) {
        const char *b64 = json_is_string(value) ? json_string_value(value) : NULL;
        size_t blen = b64 ? strlen(b64) : 0;
        uint8_t *bin = cf_xmalloc(blen / 4 * 3 + 3);
        size_t binlen = 0;
        const char *end = NULL;
        if (!b64 ||
            sodium_base642bin(bin, blen / 4 * 3 + 3, b64, blen, NULL, &binlen, &end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            end != b64 + blen) {
            free(bin);
            cf_errf(err, errlen, "variable '%s': a Bytes value must be Base64", name);
            return CF_EINVAL;
        }
        cf_val_set_bytes(out, bin, binlen);
        free(bin);
    } else {
        cf_errf(err, errlen,
                "variable '%s': type '%.32s' is not supported (String, Integer, Long, Short, "
                "Double, Boolean, Date, Json, Bytes, Null)",
                name, t);
        return CF_EINVAL;
    }
    return 0;
}

/* A value in Camunda's typed form. */
static json_t *val_to_json(const struct cf_val *v)
{
    json_t *o = json_object();
    json_t *value = NULL;
    const char *type = cf_val_type_name(v->type);
    char b[64];
    switch (v->type) {
    case CF_VALUE_STRING:
        value = jstr(v->u.s);
        break;
    case CF_VALUE_LONG:
        value = json_integer(v->u.l);
        break;
    case CF_VALUE_DOUBLE:
        value = json_real(v->u.d); /* NULL for NaN and infinities: null then */
        break;
    case CF_VALUE_BOOLEAN:
        value = json_boolean(v->u.b);
        break;
    case CF_VALUE_DATE:
        camunda_date(v->u.l, b);
        value = json_string(b);
        break;
    case CF_VALUE_JSON: {
        char *text = v->u.json ? json_dumps(v->u.json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        value = jstr(text);
        free(text);
        break;
    }
    case CF_VALUE_BYTES: {
        size_t n = sodium_base64_ENCODED_LEN(v->u.bytes.len, sodium_base64_VARIANT_ORIGINAL);
        char *text = cf_xmalloc(n);
        sodium_bin2base64(text, n, v->u.bytes.p ? v->u.bytes.p : (const uint8_t *)"",
                          v->u.bytes.len, sodium_base64_VARIANT_ORIGINAL);
        value = json_string(text);
        free(text);
        break;
    }
    default:
        break;
    }
    set(o, "type", json_string(type));
    set(o, "value", value);
    set(o, "valueInfo", json_object());
    return o;
}

struct vars {
    struct cf_named_val *v;
    size_t n;
};

static void vars_free(struct vars *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        free((char *)vs->v[i].name);
        cf_val_free(&vs->v[i].val);
    }
    free(vs->v);
    memset(vs, 0, sizeof(*vs));
}

static bool var_name_ok(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    if (n == 0 || n > MAX_VAR_NAME) {
        cf_errf(err, errlen, "a variable name must have 1 to %d characters", MAX_VAR_NAME);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)name[i] < 0x20) {
            cf_errf(err, errlen, "variable names may not contain control characters");
            return false;
        }
    }
    return true;
}

/* {name: {value, type, valueInfo}, ...} into named values; NULL or null is no variables. */
static int vars_from_json(json_t *obj, struct vars *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!obj || json_is_null(obj))
        return 0;
    if (!json_is_object(obj)) {
        cf_errf(err, errlen, "variables must be an object of {value, type} objects");
        return CF_EINVAL;
    }
    out->v = cf_xcalloc(json_object_size(obj) + 1, sizeof(*out->v));
    const char *name;
    json_t *dto;
    json_object_foreach(obj, name, dto)
    {
        if (!var_name_ok(name, err, errlen))
            goto fail;
        struct cf_named_val *nv = &out->v[out->n];
        nv->name = cf_xstrdup(name);
        out->n++;
        if (val_from_json(name, dto, &nv->val, err, errlen))
            goto fail;
    }
    return 0;
fail:
    vars_free(out);
    return CF_EINVAL;
}

/* ---- JSON shapes --------------------------------------------------------------------------- */

static json_t *definition_json(const struct cf_def_row *d)
{
    json_t *o = json_object();
    set(o, "id", jid(d->id));
    set(o, "key", jstr(d->key));
    set(o, "category", json_null());
    set(o, "description", json_null());
    set(o, "name", jstr(d->name));
    set(o, "version", json_integer(d->version));
    set(o, "resource", jstr(d->resource_name));
    set(o, "deploymentId", jid(d->deployment_id));
    set(o, "diagram", json_null());
    set(o, "suspended", json_false());
    set(o, "tenantId", jtenant(d->tenant_id));
    set(o, "versionTag", json_null());
    set(o, "historyTimeToLive", json_null());
    set(o, "startableInTasklist", json_true());
    return o;
}

static json_t *deployment_json(const struct cf_api_request *r, const struct cf_deployment_row *d)
{
    json_t *o = json_object();
    set(o, "links", self_link(r, "deployment", d->id));
    set(o, "id", jid(d->id));
    set(o, "name", jstr(d->name));
    set(o, "source", jstr(d->source));
    set(o, "deploymentTime", jdate(d->deployed_at));
    set(o, "tenantId", jtenant(d->tenant_id));
    return o;
}

static bool inst_running(const struct cf_inst_row *i)
{
    return strcmp(i->state, "ACTIVE") == 0 || strcmp(i->state, "CREATED") == 0;
}

static json_t *instance_json(const struct cf_api_request *r, const struct cf_inst_row *i,
                             const char *def_key)
{
    json_t *o = json_object();
    set(o, "links", self_link(r, "process-instance", i->id));
    set(o, "id", jid(i->id));
    set(o, "definitionId", jid(i->definition_id));
    set(o, "definitionKey", jstr(def_key));
    set(o, "businessKey", jstr(i->business_key));
    set(o, "caseInstanceId", json_null());
    set(o, "ended", json_boolean(!inst_running(i)));
    set(o, "suspended", json_false());
    set(o, "tenantId", jtenant(i->tenant_id));
    return o;
}

static const char *history_state(const char *state)
{
    if (strcmp(state, "COMPLETED") == 0)
        return "COMPLETED";
    if (strcmp(state, "CANCELED") == 0)
        return "EXTERNALLY_TERMINATED";
    if (strcmp(state, "TERMINATED") == 0)
        return "INTERNALLY_TERMINATED";
    return "ACTIVE";
}

static json_t *hist_instance_json(const struct cf_inst_row *i, const char *def_key)
{
    json_t *o = json_object();
    set(o, "id", jid(i->id));
    set(o, "businessKey", jstr(i->business_key));
    set(o, "processDefinitionId", jid(i->definition_id));
    set(o, "processDefinitionKey", jstr(def_key));
    set(o, "startTime", jdate(i->started_at));
    set(o, "endTime", jdate(i->ended_at));
    set(o, "durationInMillis",
        i->ended_at && i->ended_at >= i->started_at
            ? json_integer((json_int_t)(i->ended_at - i->started_at))
            : json_null());
    set(o, "superProcessInstanceId", jid(i->super_instance_id));
    set(o, "rootProcessInstanceId", jid(i->super_instance_id ? i->super_instance_id : i->id));
    set(o, "tenantId", jtenant(i->tenant_id));
    set(o, "state", json_string(history_state(i->state)));
    return o;
}

static json_t *incident_json(const struct cf_incident_row *i, const char *tenant, int64_t def_id)
{
    json_t *o = json_object();
    set(o, "id", jid(i->id));
    set(o, "processDefinitionId", jid(def_id));
    set(o, "processInstanceId", jid(i->instance_id));
    set(o, "executionId", jid(i->execution_id));
    set(o, "incidentTimestamp", jdate(i->created_at));
    set(o, "incidentType", jstr(i->type));
    set(o, "activityId", jstr(i->activity_id));
    set(o, "failedActivityId", jstr(i->activity_id));
    set(o, "causeIncidentId", jid(i->id));
    set(o, "rootCauseIncidentId", jid(i->id));
    set(o, "configuration", jid(i->job_id));
    set(o, "tenantId", jtenant(tenant));
    set(o, "incidentMessage", jstr(i->message));
    set(o, "jobDefinitionId", json_null());
    set(o, "annotation", json_null());
    return o;
}

/* ---- /version ------------------------------------------------------------------------------ */

static void h_version(struct cf_api_request *r)
{
    cf_api_respond_json(r, 200,
                        json_pack("{s:s, s:s, s:s}", "version", CAMUNDA_VERSION, "product",
                                  "certflow", "certflowVersion", CERTFLOW_VERSION));
}

/* ---- /deployment --------------------------------------------------------------------------- */

struct list_ctx {
    struct cf_api_request *r;
    json_t *a;
};

static int add_deployment(void *arg, const struct cf_deployment_row *d)
{
    struct list_ctx *c = arg;
    json_array_append_new(c->a, deployment_json(c->r, d));
    return 0;
}

static void h_deployments(struct cf_api_request *r)
{
    struct scope sc;
    int64_t first, max;
    char name[QBUF];
    int has_name;
    if (qpage(r, &first, &max) || (has_name = qparam(r, "name", name, sizeof name)) < 0 ||
        scope_from_query(r, &sc))
        return;
    struct cf_tenants t = scope_tenants(&sc);
    struct list_ctx c = {r, json_array()};
    int rc = cf_query_deployments(cf_api_store(r->api), &t, has_name == 0 ? name : NULL, first, max,
                                  add_deployment, &c);
    scope_free(&sc);
    if (rc) {
        json_decref(c.a);
        fail(r, rc, "listing deployments");
        return;
    }
    cf_api_respond_json(r, 200, c.a);
}

static void h_deployment_count(struct cf_api_request *r)
{
    struct scope sc;
    char name[QBUF];
    int has_name = qparam(r, "name", name, sizeof name);
    if (has_name < 0 || scope_from_query(r, &sc))
        return;
    struct cf_tenants t = scope_tenants(&sc);
    int64_t n = 0;
    int rc = cf_query_deployment_count(cf_api_store(r->api), &t, has_name == 0 ? name : NULL, &n);
    scope_free(&sc);
    if (rc) {
        fail(r, rc, "counting deployments");
        return;
    }
    cf_api_respond_json(r, 200, json_pack("{s:I}", "count", (json_int_t)n));
}

static void h_deployment_get(struct cf_api_request *r)
{
    int64_t id;
    struct cf_deployment_row d;
    struct cf_tenants t = tenants_of(r);
    if (parse_id(r->captures[0], &id) ||
        cf_query_deployment_get(cf_api_store(r->api), &t, id, &d) != 0) {
        cf_api_error(r, 404, "InvalidRequestException", "Deployment with id '%.64s' does not exist",
                     r->captures[0]);
        return;
    }
    json_t *o = deployment_json(r, &d);
    cf_deployment_row_free(&d);
    cf_api_respond_json(r, 200, o);
}

/* ---- POST /deployment/create ---------------------------------------------------------------- */

struct resource {
    const char *name;
    const uint8_t *data;
    size_t len;
    struct cf_model **models;
    size_t n_models;
};

/* Appends each problem as "* message | resource x | line n | element id", the shape Camunda
 * gives its parse errors, and the same problems to `details` for clients that read them. */
static void add_problems(struct cf_buf *msg, json_t *details, const char *resource,
                         const struct cf_diags *d)
{
    json_t *res = json_object_get(details, resource);
    if (!res) {
        res = json_pack("{s:[], s:[]}", "errors", "warnings");
        json_object_set_new(details, resource, res);
    }
    json_t *errors = json_object_get(res, "errors");
    for (size_t i = 0; i < d->count; i++) {
        const struct cf_diag *g = &d->items[i];
        cf_buf_printf(msg, "\n* %s | resource %s", g->message, resource);
        if (g->line > 0)
            cf_buf_printf(msg, " | line %d", g->line);
        if (g->element_id)
            cf_buf_printf(msg, " | element %s", g->element_id);
        json_t *e = json_object();
        set(e, "message", jstr(g->message));
        set(e, "line", g->line > 0 ? json_integer(g->line) : json_null());
        set(e, "column", json_null());
        set(e, "mainElementId", jstr(g->element_id));
        set(e, "elementIds", g->element_id ? json_pack("[s]", g->element_id) : json_array());
        json_array_append_new(errors, e);
    }
}

static bool text_field(struct cf_api_request *r, const struct cf_multipart *mp, const char *name,
                       char **out)
{
    size_t count;
    const struct cf_multipart_part *p = cf_multipart_find(mp, name, &count);
    *out = NULL;
    if (!p)
        return true;
    if (count > 1 || p->filename || p->len > MAX_FIELD_BYTES || memchr(p->data, 0, p->len)) {
        cf_api_error(r, 400, NULL, "form part '%s' must be given once, as text of at most %d bytes",
                     name, MAX_FIELD_BYTES);
        return false;
    }
    *out = cf_xstrndup((const char *)p->data, p->len);
    return true;
}

static bool bool_field(struct cf_api_request *r, const char *name, const char *v, bool *out)
{
    *out = false;
    if (!v)
        return true;
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
        cf_api_error(r, 400, NULL, "form part '%s' must be true or false", name);
        return false;
    }
    *out = strcmp(v, "true") == 0;
    return true;
}

static bool is_field(const char *name)
{
    static const char *const fields[] = {
        "deployment-name",     "deployment-source", "enable-duplicate-filtering",
        "deploy-changed-only", "tenant-id",         "deployment-activation-time"};
    for (size_t i = 0; i < CF_ARRAY_LEN(fields); i++)
        if (strcmp(name, fields[i]) == 0)
            return true;
    return false;
}

static bool is_bpmn_name(const char *n)
{
    size_t len = strlen(n);
    return (len > 5 && strcmp(n + len - 5, ".bpmn") == 0) ||
           (len > 11 && strcmp(n + len - 11, ".bpmn20.xml") == 0);
}

/* Chooses the deployment's tenant: the one asked for, which must be the caller's (403
 * otherwise), or the caller's only tenant. Answers itself and returns NULL on error. */
static const char *deploy_tenant(struct cf_api_request *r, const char *asked)
{
    if (asked) {
        if (!cf_principal_has_tenant(&r->who, asked)) {
            cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'", r->who.name,
                         asked);
            return NULL;
        }
        return asked;
    }
    if (r->who.n_tenants == 1)
        return r->who.tenants[0];
    cf_api_error(r, 400, NULL,
                 r->who.n_tenants ? "tenant-id is required: user %s belongs to several tenants"
                                  : "user %s belongs to no tenant",
                 r->who.name);
    return NULL;
}

static void h_deploy(struct cf_api_request *r)
{
    char boundary[CF_MULTIPART_MAX_BOUNDARY + 1], err[512];
    int rc =
        cf_multipart_boundary(cf_http_header(r->http, "Content-Type"), boundary, err, sizeof err);
    if (rc) {
        cf_api_error(r, rc == CF_EINVAL ? 415 : 400, NULL, "%s", err);
        return;
    }
    struct cf_multipart mp;
    struct cf_multipart_limits lim = {.max_parts = 64, .max_part_bytes = CF_BPMN_MAX_BYTES};
    rc = cf_multipart_parse(r->http->body, r->http->body_len, boundary, &lim, &mp, err, sizeof err);
    if (rc) {
        cf_api_error(r, rc == CF_ELIMIT ? 413 : 400, NULL, "multipart body: %s", err);
        return;
    }
    char *name = NULL, *source = NULL, *dup = NULL, *changed = NULL, *tenant_field = NULL,
         *activation = NULL;
    struct resource *res = cf_xcalloc(mp.n_parts + 1, sizeof(*res));
    size_t n_res = 0;
    bool dup_filter, changed_only;
    struct cf_buf msg;
    cf_buf_init(&msg);
    json_t *details = json_object();
    if (!text_field(r, &mp, "deployment-name", &name) ||
        !text_field(r, &mp, "deployment-source", &source) ||
        !text_field(r, &mp, "enable-duplicate-filtering", &dup) ||
        !text_field(r, &mp, "deploy-changed-only", &changed) ||
        !text_field(r, &mp, "tenant-id", &tenant_field) ||
        !text_field(r, &mp, "deployment-activation-time", &activation) ||
        !bool_field(r, "enable-duplicate-filtering", dup, &dup_filter) ||
        !bool_field(r, "deploy-changed-only", changed, &changed_only))
        goto out;
    if (activation) {
        cf_api_error(r, 400, NULL, "deployment-activation-time is not supported by certflow");
        goto out;
    }
    const char *tenant = deploy_tenant(r, tenant_field && *tenant_field ? tenant_field : NULL);
    if (!tenant)
        goto out;
    /* Every other part is a resource, named by its file name (or its part name). */
    for (size_t i = 0; i < mp.n_parts; i++) {
        const struct cf_multipart_part *p = &mp.parts[i];
        if (is_field(p->name))
            continue;
        const char *rname = p->filename && *p->filename ? p->filename : p->name;
        if (strlen(rname) > MAX_RESOURCE_NAME) {
            cf_api_error(r, 400, NULL, "resource name longer than %d characters",
                         MAX_RESOURCE_NAME);
            goto out;
        }
        if (!is_bpmn_name(rname)) {
            cf_api_error(r, 400, NULL,
                         "resource '%s': certflow deploys BPMN processes only (.bpmn, "
                         ".bpmn20.xml)",
                         rname);
            goto out;
        }
        for (size_t k = 0; k < n_res; k++) {
            if (strcmp(res[k].name, rname) == 0) {
                cf_api_error(r, 400, NULL, "resource '%s' is given twice", rname);
                goto out;
            }
        }
        res[n_res].name = rname;
        res[n_res].data = p->data;
        res[n_res].len = p->len;
        n_res++;
    }
    if (!n_res) {
        cf_api_error(r, 400, NULL, "No deployment resources contained in the form upload.");
        goto out;
    }
    /* Check every resource before deploying any, so that one broken file leaves nothing
     * deployed and the answer lists the problems of all of them. */
    struct cf_engine *e = cf_api_engine(r->api);
    struct cf_store *st = cf_api_store(r->api);
    bool bad = false;
    for (size_t i = 0; i < n_res; i++) {
        struct cf_diags diags, warnings;
        cf_diags_init(&diags);
        cf_diags_init(&warnings);
        int lrc = cf_bpmn_load(res[i].data, res[i].len, &res[i].models, &res[i].n_models, &diags);
        if (!lrc)
            lrc = cf_engine_check_models(cf_engine_registry(e), st, tenant, res[i].models,
                                         res[i].n_models, &diags, &warnings);
        for (size_t m = 0; !lrc && m < res[i].n_models; m++)
            for (size_t k = 0; k < i; k++)
                for (size_t mm = 0; mm < res[k].n_models; mm++)
                    if (strcmp(res[k].models[mm]->key, res[i].models[m]->key) == 0)
                        cf_diags_add(&diags, res[i].models[m]->line, res[i].models[m]->key,
                                     "process key '%s' is also defined in resource %s",
                                     res[i].models[m]->key, res[k].name);
        if (lrc || diags.count) {
            bad = true;
            if (!diags.count)
                cf_diags_add(&diags, 0, NULL, "%s", cf_strerror(lrc));
            add_problems(&msg, details, res[i].name, &diags);
        }
        cf_diags_free(&diags);
        cf_diags_free(&warnings);
    }
    if (bad) {
        char *text = cf_xasprintf("%s%s", PARSE_PREFIX, msg.data ? msg.data : "");
        json_t *body = json_object();
        set(body, "type", json_string("ParseException"));
        set(body, "message", jstr(text));
        set(body, "details", json_incref(details));
        free(text);
        cf_api_respond_json(r, 400, body);
        goto out;
    }
    /* The engine deploys one resource per call, each as its own deployment; the first new
     * deployment is the one reported, with every definition that is new. */
    json_t *defs = json_object();
    int64_t reported = 0, existing_def = 0;
    for (size_t i = 0; i < n_res; i++) {
        struct cf_deploy_result dr;
        rc = cf_engine_deploy(e, res[i].name, res[i].data, res[i].len, tenant, &dr);
        if (rc) {
            if (dr.diags.count && (rc == CF_EPARSE || rc == CF_EINVALID)) {
                add_problems(&msg, details, res[i].name, &dr.diags);
                char *text = cf_xasprintf("%s%s", PARSE_PREFIX, msg.data ? msg.data : "");
                json_t *body = json_object();
                set(body, "type", json_string("ParseException"));
                set(body, "message", jstr(text));
                set(body, "details", json_incref(details));
                free(text);
                cf_api_respond_json(r, 400, body);
            } else {
                fail(r, rc, "deployment");
            }
            cf_deploy_result_free(&dr);
            json_decref(defs);
            goto out;
        }
        if (dr.deployment_id && !reported)
            reported = dr.deployment_id;
        struct cf_tenants one = {&tenant, 1};
        for (size_t k = 0; k < dr.n_defs; k++) {
            if (!dr.defs[k].is_new) {
                existing_def = existing_def ? existing_def : dr.defs[k].definition_id;
                continue;
            }
            struct cf_def_row d;
            if (cf_query_def_get(st, &one, dr.defs[k].definition_id, false, &d) == 0) {
                char key[24];
                snprintf(key, sizeof key, "%" PRId64, d.id);
                json_object_set_new(defs, key, definition_json(&d));
                cf_def_row_free(&d);
            }
        }
        cf_deploy_result_free(&dr);
    }
    /* Nothing new: as Camunda with duplicate filtering, answer with the deployment that holds
     * the unchanged definitions, and no deployed definitions. */
    struct cf_tenants one = {&tenant, 1};
    if (!reported && existing_def) {
        struct cf_def_row d;
        if (cf_query_def_get(st, &one, existing_def, false, &d) == 0) {
            reported = d.deployment_id;
            cf_def_row_free(&d);
        }
    }
    struct cf_deployment_row dep;
    if (!reported || cf_query_deployment_get(st, &one, reported, &dep) != 0) {
        json_decref(defs);
        fail(r, CF_ENOENT, "reading the deployment back");
        goto out;
    }
    json_t *o = deployment_json(r, &dep);
    cf_deployment_row_free(&dep);
    set(o, "deployedProcessDefinitions", json_object_size(defs) ? json_incref(defs) : json_null());
    set(o, "deployedCaseDefinitions", json_null());
    set(o, "deployedDecisionDefinitions", json_null());
    set(o, "deployedDecisionRequirementsDefinitions", json_null());
    json_decref(defs);
    cf_api_respond_json(r, 200, o);
out:
    for (size_t i = 0; i < n_res; i++)
        cf_models_free(res[i].models, res[i].n_models);
    free(res);
    free(name);
    free(source);
    free(dup);
    free(changed);
    free(tenant_field);
    free(activation);
    cf_buf_free(&msg);
    json_decref(details);
    cf_multipart_free(&mp);
}

/* ---- /process-definition ------------------------------------------------------------------- */

static int add_definition(void *arg, const struct cf_def_row *d)
{
    json_array_append_new(arg, definition_json(d));
    return 0;
}

/* Reads the filters of a definition listing; -1 when answered. */
static int def_filter(struct cf_api_request *r, struct cf_def_filter *f, char *key, char *name,
                      char *dep)
{
    memset(f, 0, sizeof(*f));
    int64_t version = 0, dep_id = 0;
    int rk, rn, rd;
    if ((rk = qparam(r, "key", key, QBUF)) < 0 || (rn = qparam(r, "name", name, QBUF)) < 0 ||
        (rd = qparam(r, "deploymentId", dep, QBUF)) < 0 ||
        qbool(r, "latestVersion", &f->latest_only) || qint(r, "version", 1, INT32_MAX, &version) ||
        qpage(r, &f->first, &f->max))
        return -1;
    if (rd == 0 && parse_id(dep, &dep_id))
        dep_id = INT64_MAX; /* matches nothing, as an unknown id would */
    f->key = rk == 0 ? key : NULL;
    f->name = rn == 0 ? name : NULL;
    f->deployment_id = dep_id;
    f->version = (int)version;
    return 0;
}

static void h_definitions(struct cf_api_request *r)
{
    struct cf_def_filter f;
    char key[QBUF], name[QBUF], dep[QBUF];
    struct scope sc;
    if (def_filter(r, &f, key, name, dep) || scope_from_query(r, &sc))
        return;
    struct cf_tenants t = scope_tenants(&sc);
    json_t *a = json_array();
    int rc = cf_query_defs(cf_api_store(r->api), &t, &f, add_definition, a);
    scope_free(&sc);
    if (rc) {
        json_decref(a);
        fail(r, rc, "listing process definitions");
        return;
    }
    cf_api_respond_json(r, 200, a);
}

static void h_definition_count(struct cf_api_request *r)
{
    struct cf_def_filter f;
    char key[QBUF], name[QBUF], dep[QBUF];
    struct scope sc;
    if (def_filter(r, &f, key, name, dep) || scope_from_query(r, &sc))
        return;
    struct cf_tenants t = scope_tenants(&sc);
    int64_t n = 0;
    int rc = cf_query_def_count(cf_api_store(r->api), &t, &f, &n);
    scope_free(&sc);
    if (rc) {
        fail(r, rc, "counting process definitions");
        return;
    }
    cf_api_respond_json(r, 200, json_pack("{s:I}", "count", (json_int_t)n));
}

/* Finds the definition a route names: by {id}, or by {key} (latest version) with an optional
 * {tenantId}. Answers 404/403/400 itself and returns non-zero on error. */
static int route_definition(struct cf_api_request *r, bool by_key, bool with_tenant, bool xml,
                            struct cf_def_row *out)
{
    struct cf_store *st = cf_api_store(r->api);
    struct cf_tenants t = tenants_of(r);
    memset(out, 0, sizeof(*out));
    if (!by_key) {
        int64_t id;
        if (parse_id(r->captures[0], &id) || cf_query_def_get(st, &t, id, xml, out) != 0) {
            cf_api_error(r, 404, "InvalidRequestException", "No matching definition with id %.64s",
                         r->captures[0]);
            return -1;
        }
        return 0;
    }
    const char *key = r->captures[0];
    const char *tenant = with_tenant ? r->captures[1] : NULL;
    if (tenant && !cf_principal_has_tenant(&r->who, tenant)) {
        cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'", r->who.name,
                     tenant);
        return -1;
    }
    struct cf_def_row latest;
    int rc = cf_query_def_latest(st, &t, key, tenant, &latest);
    if (rc == CF_EEXIST) {
        cf_api_error(r, 400, "InvalidRequestException",
                     "Process definition with key '%.64s' exists for multiple tenants: name one "
                     "with /key/{key}/tenant-id/{tenantId}",
                     key);
        return -1;
    }
    if (rc) {
        cf_api_error(r, 404, "InvalidRequestException",
                     "No matching process definition with key: %.64s%s%.64s", key,
                     tenant ? " and tenant-id: " : "", tenant ? tenant : "");
        return -1;
    }
    if (!xml) {
        *out = latest;
        return 0;
    }
    rc = cf_query_def_get(st, &t, latest.id, true, out);
    cf_def_row_free(&latest);
    if (rc) {
        fail(r, rc, "reading the process definition");
        return -1;
    }
    return 0;
}

static void definition_get(struct cf_api_request *r, bool by_key, bool with_tenant)
{
    struct cf_def_row d;
    if (route_definition(r, by_key, with_tenant, false, &d))
        return;
    json_t *o = definition_json(&d);
    cf_def_row_free(&d);
    cf_api_respond_json(r, 200, o);
}

static void h_definition_get(struct cf_api_request *r)
{
    definition_get(r, false, false);
}

static void h_definition_get_key(struct cf_api_request *r)
{
    definition_get(r, true, false);
}

static void h_definition_get_key_tenant(struct cf_api_request *r)
{
    definition_get(r, true, true);
}

static void definition_xml(struct cf_api_request *r, bool by_key, bool with_tenant)
{
    struct cf_def_row d;
    if (route_definition(r, by_key, with_tenant, true, &d))
        return;
    json_t *o = json_object();
    set(o, "id", jid(d.id));
    set(o, "bpmn20Xml", json_stringn((const char *)d.xml, d.xml_len));
    cf_def_row_free(&d);
    cf_api_respond_json(r, 200, o);
}

static void h_definition_xml(struct cf_api_request *r)
{
    definition_xml(r, false, false);
}

static void h_definition_xml_key(struct cf_api_request *r)
{
    definition_xml(r, true, false);
}

static void h_definition_xml_key_tenant(struct cf_api_request *r)
{
    definition_xml(r, true, true);
}

/* POST .../start: {businessKey, variables} → the new instance. */
static void definition_start(struct cf_api_request *r, bool by_key, bool with_tenant)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    struct cf_def_row d;
    if (route_definition(r, by_key, with_tenant, false, &d)) {
        json_decref(body);
        return;
    }
    char err[512];
    struct vars vs = {0};
    json_t *bk = json_object_get(body, "businessKey");
    const char *business_key = NULL;
    if (bk && !json_is_null(bk)) {
        if (!json_is_string(bk) || json_string_length(bk) > 255) {
            cf_api_error(r, 400, NULL, "businessKey must be a string of at most 255 bytes");
            goto out;
        }
        business_key = json_string_value(bk);
    }
    static const char *const unsupported[] = {"startInstructions", "caseInstanceId"};
    for (size_t i = 0; i < CF_ARRAY_LEN(unsupported); i++) {
        json_t *u = json_object_get(body, unsupported[i]);
        if (u && !json_is_null(u)) {
            cf_api_error(r, 400, NULL, "%s is not supported by certflow", unsupported[i]);
            goto out;
        }
    }
    if (vars_from_json(json_object_get(body, "variables"), &vs, err, sizeof err)) {
        cf_api_error(r, 400, NULL, "%s", err);
        goto out;
    }
    /* Starting needs a grant of the process (or of every process) in its tenant, unless the
     * caller is an admin. */
    if (!r->who.admin &&
        cf_admin_user_may_start(cf_api_store(r->api), r->who.user_id, d.tenant_id, d.key) != 0) {
        cf_api_error(r, 403, NULL, "user %s may not start process '%s'", r->who.name, d.key);
        goto out;
    }
    int64_t instance_id = 0;
    int rc = cf_engine_start(cf_api_engine(r->api), d.id, business_key, vs.v, vs.n, &instance_id,
                             err, sizeof err);
    if (rc == CF_EINVALID || rc == CF_EINVAL) {
        cf_api_error(r, 400, "ProcessEngineException", "%s", err);
        goto out;
    }
    if (rc) {
        cf_log(CF_LOG_WARN, "engine-rest: start of definition=%" PRId64 " failed: %s", d.id, err);
        fail(r, rc, "starting the process");
        goto out;
    }
    struct cf_inst_row inst;
    struct cf_tenants t = tenants_of(r);
    if (cf_query_instance_get(cf_api_store(r->api), &t, instance_id, &inst) != 0) {
        fail(r, CF_ENOENT, "reading the new instance");
        goto out;
    }
    json_t *o = instance_json(r, &inst, d.key);
    cf_inst_row_free(&inst);
    cf_api_respond_json(r, 200, o);
out:
    vars_free(&vs);
    cf_def_row_free(&d);
    json_decref(body);
}

static void h_start_id(struct cf_api_request *r)
{
    definition_start(r, false, false);
}

static void h_start_key(struct cf_api_request *r)
{
    definition_start(r, true, false);
}

static void h_start_key_tenant(struct cf_api_request *r)
{
    definition_start(r, true, true);
}

/* ---- /process-instance --------------------------------------------------------------------- */

struct inst_list {
    struct cf_api_request *r;
    json_t *a;
    bool history;
};

static int add_instance(void *arg, const struct cf_inst_row *i, const char *def_key)
{
    struct inst_list *c = arg;
    json_array_append_new(c->a, c->history ? hist_instance_json(i, def_key)
                                           : instance_json(c->r, i, def_key));
    return 0;
}

/* Filters of instance listings; -1 when answered. */
static int inst_filter(struct cf_api_request *r, bool history, struct cf_inst_filter *f, char *key,
                       char *bkey, char *def, char *super)
{
    memset(f, 0, sizeof(*f));
    int rk, rb, rd, rs;
    bool finished = false, unfinished = false;
    if ((rk = qparam(r, "processDefinitionKey", key, QBUF)) < 0 ||
        (rb = qparam(r, "businessKey", bkey, QBUF)) < 0 ||
        (rd = qparam(r, "processDefinitionId", def, QBUF)) < 0 ||
        (rs = qparam(r, history ? "superProcessInstanceId" : "superProcessInstance", super, QBUF)) <
            0 ||
        qbool(r, "withIncident", &f->with_incident) || qpage(r, &f->first, &f->max))
        return -1;
    if (history && (qbool(r, "finished", &finished) || qbool(r, "unfinished", &unfinished) ||
                    qbool(r, "withIncidents", &f->with_incident)))
        return -1;
    f->definition_key = rk == 0 ? key : NULL;
    f->business_key = rb == 0 ? bkey : NULL;
    if (rd == 0 && parse_id(def, &f->definition_id))
        f->definition_id = INT64_MAX;
    if (rs == 0 && parse_id(super, &f->super_instance_id))
        f->super_instance_id = INT64_MAX;
    f->active_only = !history || unfinished;
    f->ended_only = history && finished;
    return 0;
}

static void instances(struct cf_api_request *r, bool history, bool count)
{
    struct cf_inst_filter f;
    char key[QBUF], bkey[QBUF], def[QBUF], super[QBUF];
    struct scope sc;
    if (inst_filter(r, history, &f, key, bkey, def, super) || scope_from_query(r, &sc))
        return;
    /* A single instance by id, as Camunda's processInstanceIds / processInstanceId filters. */
    char one[QBUF];
    int ro = qparam(r, history ? "processInstanceId" : "processInstanceIds", one, sizeof one);
    if (ro < 0) {
        scope_free(&sc);
        return;
    }
    struct cf_tenants t = scope_tenants(&sc);
    struct cf_store *st = cf_api_store(r->api);
    int rc;
    if (count) {
        int64_t n = 0;
        rc = cf_query_instance_count(st, &t, &f, &n);
        scope_free(&sc);
        if (rc)
            fail(r, rc, "counting process instances");
        else
            cf_api_respond_json(r, 200, json_pack("{s:I}", "count", (json_int_t)n));
        return;
    }
    struct inst_list c = {r, json_array(), history};
    if (ro == 0) {
        /* The id filter narrows an otherwise equal listing. */
        int64_t id;
        struct cf_inst_row inst;
        rc = 0;
        if (!strchr(one, ',') && parse_id(one, &id) == 0 &&
            cf_query_instance_get(st, &t, id, &inst) == 0) {
            bool keep = (!f.active_only || inst_running(&inst)) &&
                        (!f.ended_only || !inst_running(&inst)) &&
                        (!f.business_key ||
                         (inst.business_key && strcmp(inst.business_key, f.business_key) == 0));
            struct cf_def_row d;
            if (keep && cf_query_def_get(st, &t, inst.definition_id, false, &d) == 0) {
                if (!f.definition_key || strcmp(d.key, f.definition_key) == 0)
                    add_instance(&c, &inst, d.key);
                cf_def_row_free(&d);
            }
            cf_inst_row_free(&inst);
        }
    } else {
        rc = cf_query_instances(st, &t, &f, add_instance, &c);
    }
    scope_free(&sc);
    if (rc) {
        json_decref(c.a);
        fail(r, rc, "listing process instances");
        return;
    }
    cf_api_respond_json(r, 200, c.a);
}

static void h_instances(struct cf_api_request *r)
{
    instances(r, false, false);
}

static void h_instance_count(struct cf_api_request *r)
{
    instances(r, false, true);
}

static void h_hist_instances(struct cf_api_request *r)
{
    instances(r, true, false);
}

static void h_hist_instance_count(struct cf_api_request *r)
{
    instances(r, true, true);
}

/* The instance a route names, within the caller's tenants; with `running`, an ended one is
 * not found either (Camunda's runtime view). Answers 404 itself. */
static int route_instance(struct cf_api_request *r, bool running, struct cf_inst_row *out)
{
    int64_t id;
    struct cf_tenants t = tenants_of(r);
    memset(out, 0, sizeof(*out));
    if (parse_id(r->captures[0], &id) == 0 &&
        cf_query_instance_get(cf_api_store(r->api), &t, id, out) == 0) {
        if (!running || inst_running(out))
            return 0;
        cf_inst_row_free(out);
    }
    cf_api_error(r, 404, "InvalidRequestException", "Process instance with id %.64s does not exist",
                 r->captures[0]);
    return -1;
}

static char *definition_key_of(struct cf_api_request *r, int64_t def_id)
{
    struct cf_def_row d;
    struct cf_tenants t = tenants_of(r);
    if (cf_query_def_get(cf_api_store(r->api), &t, def_id, false, &d) != 0)
        return NULL;
    char *key = d.key;
    d.key = NULL;
    cf_def_row_free(&d);
    return key;
}

static void h_instance_get(struct cf_api_request *r)
{
    struct cf_inst_row inst;
    if (route_instance(r, true, &inst))
        return;
    char *key = definition_key_of(r, inst.definition_id);
    json_t *o = instance_json(r, &inst, key);
    free(key);
    cf_inst_row_free(&inst);
    cf_api_respond_json(r, 200, o);
}

static void h_hist_instance_get(struct cf_api_request *r)
{
    struct cf_inst_row inst;
    if (route_instance(r, false, &inst))
        return;
    char *key = definition_key_of(r, inst.definition_id);
    json_t *o = hist_instance_json(&inst, key);
    free(key);
    cf_inst_row_free(&inst);
    cf_api_respond_json(r, 200, o);
}

static void h_instance_delete(struct cf_api_request *r)
{
    struct cf_inst_row inst;
    if (route_instance(r, true, &inst))
        return;
    char err[512], reason[160];
    snprintf(reason, sizeof reason, "by user %s through the REST API", r->who.name);
    int rc = cf_engine_cancel_instance(cf_api_engine(r->api), inst.id, reason, err, sizeof err);
    int64_t id = inst.id;
    cf_inst_row_free(&inst);
    if (rc == CF_ENOENT || rc == CF_ESTATE) {
        cf_api_error(r, 404, "InvalidRequestException",
                     "Process instance with id %" PRId64 " does not exist", id);
        return;
    }
    if (rc) {
        cf_log(CF_LOG_WARN, "engine-rest: cancel instance=%" PRId64 " failed: %s", id, err);
        fail(r, rc, "canceling the process instance");
        return;
    }
    cf_api_no_content(r);
}

/* ---- activity instances -------------------------------------------------------------------- */

struct tree_exec {
    int64_t id;
    int64_t parent_id;
    char *activity_id;
    char *state;
    int64_t act_inst_id;
};

struct tree_hist {
    char *type;
    char *name;
};

struct tree {
    struct tree_exec *x;
    size_t n;
    struct cf_imap hist; /* activity instance id → struct tree_hist */
    struct cf_imap jobs; /* execution id → job type (static string) */
    json_t *incidents;   /* open incidents of the instance */
    int64_t instance_id;
    int64_t definition_id;
};

static int tree_add_exec(void *arg, const struct cf_exec_row *r)
{
    struct tree *t = arg;
    t->x = cf_xrealloc(t->x, (t->n + 1) * sizeof(*t->x));
    struct tree_exec *x = &t->x[t->n++];
    x->id = r->id;
    x->parent_id = r->parent_id;
    x->activity_id = r->activity_id ? cf_xstrdup(r->activity_id) : NULL;
    x->state = cf_xstrdup(r->state ? r->state : "");
    x->act_inst_id = r->act_inst_id;
    return 0;
}

static int tree_add_hist(void *arg, const struct cf_hist_row *r)
{
    struct tree *t = arg;
    if (r->end_state)
        return 0;
    struct tree_hist *h = cf_xcalloc(1, sizeof(*h));
    h->type = cf_xstrdup(r->activity_type ? r->activity_type : "");
    h->name = r->activity_name ? cf_xstrdup(r->activity_name) : NULL;
    free(cf_imap_get(&t->hist, r->id));
    cf_imap_put(&t->hist, r->id, h);
    return 0;
}

static int tree_add_job(void *arg, const struct cf_job_row *r)
{
    struct tree *t = arg;
    static const char async_before[] = "async-before", async_after[] = "async-after";
    if (!r->execution_id)
        return 0;
    if (strcmp(r->type, async_before) == 0)
        cf_imap_put(&t->jobs, r->execution_id, (void *)async_before);
    else if (strcmp(r->type, async_after) == 0)
        cf_imap_put(&t->jobs, r->execution_id, (void *)async_after);
    return 0;
}

static int tree_add_incident(void *arg, const struct cf_incident_row *i, const char *tenant,
                             int64_t def_id)
{
    (void)tenant;
    (void)def_id;
    struct tree *t = arg;
    json_array_append_new(t->incidents, json_pack("{s:o, s:s, s:o}", "id", jid(i->id), "activityId",
                                                  i->activity_id ? i->activity_id : "",
                                                  "executionId", jid(i->execution_id)));
    return 0;
}

static void tree_free(struct tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->x[i].activity_id);
        free(t->x[i].state);
    }
    free(t->x);
    for (size_t i = 0; i < t->hist.cap; i++) {
        struct tree_hist *h = t->hist.slots[i].value;
        if (t->hist.slots[i].key && h) {
            free(h->type);
            free(h->name);
            free(h);
        }
    }
    cf_imap_free(&t->hist);
    cf_imap_free(&t->jobs);
    json_decref(t->incidents);
}

/* Sets incidentIds and incidents of a node from the incidents of its execution. */
static void node_incidents(const struct tree *t, json_t *node, int64_t execution_id, bool root)
{
    json_t *ids = json_array(), *list = json_array();
    size_t i;
    json_t *inc;
    json_array_foreach(t->incidents, i, inc)
    {
        json_t *ex = json_object_get(inc, "executionId");
        char b[24];
        snprintf(b, sizeof b, "%" PRId64, execution_id);
        bool mine = json_is_string(ex) ? strcmp(json_string_value(ex), b) == 0 : root;
        if (!mine)
            continue;
        json_array_append(ids, json_object_get(inc, "id"));
        json_array_append_new(list, json_pack("{s:O, s:O}", "id", json_object_get(inc, "id"),
                                              "activityId", json_object_get(inc, "activityId")));
    }
    set(node, "incidentIds", ids);
    set(node, "incidents", list);
}

static char *node_id(const struct tree_exec *x)
{
    return cf_xasprintf("%s:%" PRId64, x->activity_id, x->act_inst_id ? x->act_inst_id : x->id);
}

/* Adds the nodes of the children of execution `parent` to `acts` and `trans`. Executions
 * without an activity (concurrent tokens between activities) are looked through. */
static void tree_children(const struct tree *t, int64_t parent, const char *parent_node,
                          json_t *acts, json_t *trans, int depth)
{
    if (depth > 64)
        return;
    for (size_t i = 0; i < t->n; i++) {
        const struct tree_exec *x = &t->x[i];
        if (x->parent_id != parent || x->id == parent)
            continue;
        if (!x->activity_id) {
            tree_children(t, x->id, parent_node, acts, trans, depth + 1);
            continue;
        }
        const struct tree_hist *h = x->act_inst_id ? cf_imap_get(&t->hist, x->act_inst_id) : NULL;
        const char *job = cf_imap_get(&t->jobs, x->id);
        char *id = node_id(x);
        json_t *n = json_object();
        set(n, "id", json_string(id));
        set(n, "parentActivityInstanceId", json_string(parent_node));
        set(n, "activityId", jstr(x->activity_id));
        set(n, "activityType", jstr(h ? h->type : NULL));
        set(n, "activityName", jstr(h ? h->name : NULL));
        set(n, "name", jstr(h ? h->name : NULL));
        set(n, "processInstanceId", jid(t->instance_id));
        set(n, "processDefinitionId", jid(t->definition_id));
        node_incidents(t, n, x->id, false);
        if (job) {
            /* Waiting for an asynchronous continuation: Camunda's transition instance. */
            set(n, "executionId", jid(x->id));
            set(n, "targetActivityId", jstr(x->activity_id));
            json_array_append_new(trans, n);
        } else {
            set(n, "executionIds", json_pack("[o]", jid(x->id)));
            json_t *ca = json_array(), *ct = json_array();
            if (strcmp(x->state, "SCOPE") == 0)
                tree_children(t, x->id, id, ca, ct, depth + 1);
            set(n, "childActivityInstances", ca);
            set(n, "childTransitionInstances", ct);
            json_array_append_new(acts, n);
        }
        free(id);
    }
}

static void h_activity_instances(struct cf_api_request *r)
{
    struct cf_inst_row inst;
    if (route_instance(r, true, &inst))
        return;
    struct cf_store *st = cf_api_store(r->api);
    struct tree t = {.instance_id = inst.id, .definition_id = inst.definition_id};
    cf_imap_init(&t.hist);
    cf_imap_init(&t.jobs);
    t.incidents = json_array();
    struct cf_tenants ten = tenants_of(r);
    struct cf_incident_filter f = {.instance_id = inst.id, .open_only = true, .max = -1};
    int rc = cf_store_exec_load(st, inst.id, tree_add_exec, &t);
    if (!rc)
        rc = cf_store_hist_list(st, inst.id, tree_add_hist, &t);
    if (!rc)
        rc = cf_store_jobs_of_instance(st, inst.id, tree_add_job, &t);
    if (!rc)
        rc = cf_query_incidents(st, &ten, &f, tree_add_incident, &t);
    if (rc) {
        tree_free(&t);
        cf_inst_row_free(&inst);
        fail(r, rc, "reading the activity instances");
        return;
    }
    struct cf_def_row d;
    bool have_def = cf_query_def_get(st, &ten, inst.definition_id, false, &d) == 0;
    int64_t root = 0;
    for (size_t i = 0; i < t.n && !root; i++)
        if (!t.x[i].parent_id)
            root = t.x[i].id;
    char rid[24];
    snprintf(rid, sizeof rid, "%" PRId64, inst.id);
    json_t *o = json_object();
    set(o, "id", json_string(rid));
    set(o, "parentActivityInstanceId", json_null());
    set(o, "activityId", jid(inst.definition_id));
    set(o, "activityType", json_string("processDefinition"));
    set(o, "activityName", jstr(have_def ? (d.name ? d.name : d.key) : NULL));
    set(o, "name", jstr(have_def ? (d.name ? d.name : d.key) : NULL));
    set(o, "processInstanceId", json_string(rid));
    set(o, "processDefinitionId", jid(inst.definition_id));
    set(o, "executionIds", root ? json_pack("[o]", jid(root)) : json_array());
    json_t *ca = json_array(), *ct = json_array();
    if (root)
        tree_children(&t, root, rid, ca, ct, 0);
    set(o, "childActivityInstances", ca);
    set(o, "childTransitionInstances", ct);
    node_incidents(&t, o, root, true);
    if (have_def)
        cf_def_row_free(&d);
    tree_free(&t);
    cf_inst_row_free(&inst);
    cf_api_respond_json(r, 200, o);
}

/* ---- variables ----------------------------------------------------------------------------- */

struct var_ctx {
    int64_t root;
    json_t *o;
    const char *only; /* one name, or NULL for all */
    json_t *list;     /* history form, when not NULL */
    const struct cf_inst_row *inst;
    const char *def_key;
};

static int first_root(void *arg, const struct cf_exec_row *r)
{
    int64_t *root = arg;
    if (!*root && !r->parent_id)
        *root = r->id;
    return 0;
}

static int collect_var(void *arg, int64_t execution_id, const char *name, const struct cf_val *v)
{
    struct var_ctx *c = arg;
    if (execution_id != c->root || (c->only && strcmp(name, c->only) != 0))
        return 0;
    json_t *dto = val_to_json(v);
    if (c->list) {
        char id[300];
        snprintf(id, sizeof id, "%" PRId64 ":%s", execution_id, name);
        json_object_set_new(dto, "id", jstr(id));
        json_object_set_new(dto, "name", jstr(name));
        json_object_set_new(dto, "processDefinitionKey", jstr(c->def_key));
        json_object_set_new(dto, "processDefinitionId", jid(c->inst->definition_id));
        json_object_set_new(dto, "processInstanceId", jid(c->inst->id));
        json_object_set_new(dto, "executionId", jid(execution_id));
        json_object_set_new(dto, "activityInstanceId", jid(c->inst->id));
        json_object_set_new(dto, "tenantId", jtenant(c->inst->tenant_id));
        json_object_set_new(dto, "state", json_string("CREATED"));
        json_object_set_new(dto, "rootProcessInstanceId", jid(c->inst->id));
        json_array_append_new(c->list, dto);
    } else {
        json_object_set_new(c->o, name, dto);
    }
    return 0;
}

/* The variables of an instance's process scope into c->o (or c->list). */
static int load_vars(struct cf_store *st, int64_t instance_id, struct var_ctx *c)
{
    int rc = cf_store_exec_load(st, instance_id, first_root, &c->root);
    if (!rc && c->root)
        rc = cf_store_var_load(st, instance_id, collect_var, c);
    return rc;
}

static void h_variables_get(struct cf_api_request *r)
{
    struct cf_inst_row inst;
    if (route_instance(r, true, &inst))
        return;
    struct var_ctx c = {.o = json_object()};
    int rc = load_vars(cf_api_store(r->api), inst.id, &c);
    cf_inst_row_free(&inst);
    if (rc) {
        json_decref(c.o);
        fail(r, rc, "reading variables");
        return;
    }
    cf_api_respond_json(r, 200, c.o);
}

static void h_variable_get(struct cf_api_request *r)
{
    struct cf_inst_row inst;
    if (route_instance(r, true, &inst))
        return;
    struct var_ctx c = {.o = json_object(), .only = r->captures[1]};
    int rc = load_vars(cf_api_store(r->api), inst.id, &c);
    cf_inst_row_free(&inst);
    json_t *v = json_object_get(c.o, r->captures[1]);
    if (rc || !v) {
        json_decref(c.o);
        if (rc)
            fail(r, rc, "reading variables");
        else
            cf_api_error(r, 404, "InvalidRequestException",
                         "process instance variable with name %.64s does not exist",
                         r->captures[1]);
        return;
    }
    json_incref(v);
    json_decref(c.o);
    cf_api_respond_json(r, 200, v);
}

/* POST {modifications: {name: {value, type}}, deletions: [name]} in one engine transaction. */
static void h_variables_post(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    struct cf_inst_row inst;
    if (route_instance(r, true, &inst)) {
        json_decref(body);
        return;
    }
    char err[512];
    struct vars mods = {0};
    const char **dels = NULL;
    size_t n_dels = 0;
    json_t *d = json_object_get(body, "deletions");
    if (vars_from_json(json_object_get(body, "modifications"), &mods, err, sizeof err)) {
        cf_api_error(r, 400, NULL, "%s", err);
        goto out;
    }
    if (d && !json_is_null(d)) {
        if (!json_is_array(d)) {
            cf_api_error(r, 400, NULL, "deletions must be an array of variable names");
            goto out;
        }
        dels = cf_xcalloc(json_array_size(d) + 1, sizeof(*dels));
        size_t i;
        json_t *name;
        json_array_foreach(d, i, name)
        {
            if (!json_is_string(name) || !var_name_ok(json_string_value(name), err, sizeof err)) {
                cf_api_error(r, 400, NULL, "deletions must be an array of variable names");
                goto out;
            }
            dels[n_dels++] = json_string_value(name);
        }
    }
    int rc = cf_engine_set_variables(cf_api_engine(r->api), inst.id, mods.v, mods.n, dels, n_dels,
                                     err, sizeof err);
    if (rc == CF_ENOENT || rc == CF_ESTATE)
        cf_api_error(r, 404, "InvalidRequestException",
                     "Process instance with id %" PRId64 " does not exist", inst.id);
    else if (rc == CF_EINVAL || rc == CF_ETYPE)
        cf_api_error(r, 400, NULL, "%s", err);
    else if (rc)
        fail(r, rc, "updating variables");
    else
        cf_api_no_content(r);
out:
    free(dels);
    vars_free(&mods);
    cf_inst_row_free(&inst);
    json_decref(body);
}

static void h_hist_variables(struct cf_api_request *r)
{
    char id[QBUF];
    int rc = qparam(r, "processInstanceId", id, sizeof id);
    if (rc < 0)
        return;
    if (rc) {
        cf_api_error(r, 400, NULL, "certflow lists historic variables of one processInstanceId");
        return;
    }
    int64_t iid;
    struct cf_inst_row inst;
    struct cf_tenants t = tenants_of(r);
    if (parse_id(id, &iid) || cf_query_instance_get(cf_api_store(r->api), &t, iid, &inst) != 0) {
        cf_api_respond_json(r, 200, json_array());
        return;
    }
    char *key = definition_key_of(r, inst.definition_id);
    struct var_ctx c = {.o = NULL, .list = json_array(), .inst = &inst, .def_key = key};
    rc = load_vars(cf_api_store(r->api), inst.id, &c);
    free(key);
    cf_inst_row_free(&inst);
    if (rc) {
        json_decref(c.list);
        fail(r, rc, "reading variables");
        return;
    }
    cf_api_respond_json(r, 200, c.list);
}

/* ---- incidents and jobs -------------------------------------------------------------------- */

static int add_incident(void *arg, const struct cf_incident_row *i, const char *tenant,
                        int64_t def_id)
{
    json_array_append_new(arg, incident_json(i, tenant, def_id));
    return 0;
}

static void incidents(struct cf_api_request *r, bool count)
{
    struct cf_incident_filter f = {.open_only = true};
    char inst[QBUF], type[QBUF], act[QBUF], conf[QBUF], iid[QBUF];
    int ri, rt, ra, rc2, rid;
    struct scope sc;
    if ((ri = qparam(r, "processInstanceId", inst, QBUF)) < 0 ||
        (rt = qparam(r, "incidentType", type, QBUF)) < 0 ||
        (ra = qparam(r, "activityId", act, QBUF)) < 0 ||
        (rc2 = qparam(r, "configuration", conf, QBUF)) < 0 ||
        (rid = qparam(r, "incidentId", iid, QBUF)) < 0 || qpage(r, &f.first, &f.max) ||
        scope_from_query(r, &sc))
        return;
    if (ri == 0 && parse_id(inst, &f.instance_id))
        f.instance_id = INT64_MAX;
    if (rc2 == 0 && parse_id(conf, &f.job_id))
        f.job_id = INT64_MAX;
    f.type = rt == 0 ? type : NULL;
    f.activity_id = ra == 0 ? act : NULL;
    if (rid == 0 && parse_id(iid, &f.incident_id))
        f.incident_id = INT64_MAX;
    struct cf_tenants t = scope_tenants(&sc);
    struct cf_store *st = cf_api_store(r->api);
    if (count) {
        int64_t n = 0;
        int rc = cf_query_incident_count(st, &t, &f, &n);
        scope_free(&sc);
        if (rc)
            fail(r, rc, "counting incidents");
        else
            cf_api_respond_json(r, 200, json_pack("{s:I}", "count", (json_int_t)n));
        return;
    }
    json_t *a = json_array();
    int rc = cf_query_incidents(st, &t, &f, add_incident, a);
    scope_free(&sc);
    if (rc) {
        json_decref(a);
        fail(r, rc, "listing incidents");
        return;
    }
    cf_api_respond_json(r, 200, a);
}

static void h_incidents(struct cf_api_request *r)
{
    incidents(r, false);
}

static void h_incident_count(struct cf_api_request *r)
{
    incidents(r, true);
}

static void h_job_get(struct cf_api_request *r)
{
    int64_t id;
    struct cf_job_row j;
    char *tenant = NULL;
    struct cf_tenants t = tenants_of(r);
    if (parse_id(r->captures[0], &id) ||
        cf_query_job_get(cf_api_store(r->api), &t, id, &j, &tenant) != 0) {
        cf_api_error(r, 404, "InvalidRequestException", "Job with id %.64s does not exist",
                     r->captures[0]);
        return;
    }
    json_t *o = json_object();
    set(o, "id", jid(j.id));
    set(o, "jobDefinitionId", json_null());
    set(o, "dueDate", jdate(j.due_at));
    set(o, "processInstanceId", jid(j.instance_id));
    set(o, "executionId", jid(j.execution_id));
    set(o, "processDefinitionId", jid(j.definition_id));
    set(o, "retries", json_integer(j.retries));
    set(o, "exceptionMessage", jstr(j.last_error));
    set(o, "failedActivityId", jstr(j.last_error ? j.activity_id : NULL));
    set(o, "suspended", json_false());
    set(o, "priority", json_integer(0));
    set(o, "tenantId", jtenant(tenant));
    set(o, "createTime", jdate(j.created_at));
    free(tenant);
    cf_job_row_free(&j);
    cf_api_respond_json(r, 200, o);
}

struct first_incident {
    int64_t id;
};

static int take_first_incident(void *arg, const struct cf_incident_row *i, const char *tenant,
                               int64_t def_id)
{
    (void)tenant;
    (void)def_id;
    struct first_incident *f = arg;
    if (!f->id)
        f->id = i->id;
    return 0;
}

/* PUT /job/{id}/retries {retries}: as in Camunda 7, giving a failed job retries again resolves
 * its failedJob incident; the engine does that through the incident. */
static void h_job_retries(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    int64_t id;
    struct cf_job_row j;
    char *tenant = NULL;
    struct cf_tenants t = tenants_of(r);
    struct cf_store *st = cf_api_store(r->api);
    if (parse_id(r->captures[0], &id) || cf_query_job_get(st, &t, id, &j, &tenant) != 0) {
        json_decref(body);
        cf_api_error(r, 404, "InvalidRequestException", "No job found with id '%.64s'",
                     r->captures[0]);
        return;
    }
    free(tenant);
    json_t *rj = json_object_get(body, "retries");
    json_t *due = json_object_get(body, "dueDate");
    if (!json_is_integer(rj) || json_integer_value(rj) < 0 || json_integer_value(rj) > 1000) {
        cf_api_error(r, 400, NULL, "retries must be an integer from 1 to 1000");
        goto out;
    }
    if (due && !json_is_null(due)) {
        cf_api_error(r, 400, NULL, "dueDate is not supported by certflow: the job runs now");
        goto out;
    }
    int retries = (int)json_integer_value(rj);
    struct first_incident fi = {0};
    struct cf_incident_filter f = {.job_id = j.id, .open_only = true, .max = 1};
    int rc = cf_query_incidents(st, &t, &f, take_first_incident, &fi);
    if (rc) {
        fail(r, rc, "finding the job's incident");
        goto out;
    }
    if (!fi.id) {
        /* A job that has not failed for good keeps its own retries; only an incident is a
         * state an operator needs to lift. */
        if (retries == 0 || j.retries == 0)
            cf_api_error(r, 400, NULL,
                         "job %" PRId64 " has no open incident; certflow only resets the retries "
                         "of a failed job",
                         j.id);
        else
            cf_api_no_content(r);
        goto out;
    }
    if (retries == 0) {
        cf_api_error(r, 400, NULL, "retries must be at least 1 to retry the failed job");
        goto out;
    }
    char err[512];
    rc = cf_engine_retry_incident(cf_api_engine(r->api), fi.id, retries, err, sizeof err);
    if (rc == CF_ENOENT || rc == CF_ESTATE)
        cf_api_error(r, 400, NULL, "%s", err);
    else if (rc)
        fail(r, rc, "retrying the job");
    else
        cf_api_no_content(r);
out:
    cf_job_row_free(&j);
    json_decref(body);
}

/* ---- POST /message ------------------------------------------------------------------------- */

static void h_message(struct cf_api_request *r)
{
    json_t *body = body_object(r);
    if (!body)
        return;
    char err[512];
    struct vars keys = {0}, pvars = {0};
    json_t *name = json_object_get(body, "messageName");
    json_t *bk = json_object_get(body, "businessKey");
    json_t *tenant = json_object_get(body, "tenantId");
    json_t *all = json_object_get(body, "all");
    json_t *result = json_object_get(body, "resultEnabled");
    json_t *without = json_object_get(body, "withoutTenantId");
    if (!json_is_string(name) || !json_string_length(name)) {
        cf_api_error(r, 400, NULL, "messageName is required");
        goto out;
    }
    if ((bk && !json_is_null(bk) && !json_is_string(bk)) ||
        (tenant && !json_is_null(tenant) && !json_is_string(tenant)) ||
        (all && !json_is_boolean(all)) || (result && !json_is_boolean(result)) ||
        (without && !json_is_boolean(without))) {
        cf_api_error(r, 400, NULL,
                     "businessKey and tenantId are strings; all, resultEnabled and "
                     "withoutTenantId are booleans");
        goto out;
    }
    static const char *const unsupported[] = {"processInstanceId", "localCorrelationKeys",
                                              "processVariablesLocal", "processDefinitionId"};
    for (size_t i = 0; i < CF_ARRAY_LEN(unsupported); i++) {
        json_t *u = json_object_get(body, unsupported[i]);
        if (u && !json_is_null(u)) {
            cf_api_error(r, 400, NULL, "%s is not supported by certflow", unsupported[i]);
            goto out;
        }
    }
    if (vars_from_json(json_object_get(body, "correlationKeys"), &keys, err, sizeof err) ||
        vars_from_json(json_object_get(body, "processVariables"), &pvars, err, sizeof err)) {
        cf_api_error(r, 400, NULL, "%s", err);
        goto out;
    }
    const char *tid = json_is_string(tenant) ? json_string_value(tenant) : NULL;
    if (json_is_true(without))
        tid = "";
    if (tid && !cf_principal_has_tenant(&r->who, tid)) {
        cf_api_error(r, 403, NULL, "user %s is not a member of tenant '%.64s'", r->who.name, tid);
        goto out;
    }
    if (!tid && r->who.n_tenants != 1) {
        cf_api_error(r, 400, NULL,
                     r->who.n_tenants ? "tenantId is required: user %s belongs to several tenants"
                                      : "user %s belongs to no tenant",
                     r->who.name);
        goto out;
    }
    if (!tid)
        tid = r->who.tenants[0];
    struct cf_correlation c = {.message = json_string_value(name),
                               .tenant_id = tid,
                               .business_key = json_is_string(bk) ? json_string_value(bk) : NULL,
                               .match = keys.v,
                               .n_match = keys.n,
                               .vars = pvars.v,
                               .n_vars = pvars.n,
                               .all = json_is_true(all)};
    int64_t ids[64];
    size_t n = 0;
    int64_t newest_before = 0;
    int rc = cf_query_instance_max_id(cf_api_store(r->api), &newest_before);
    if (rc) {
        fail(r, rc, "message correlation");
        goto out;
    }
    rc =
        cf_engine_correlate(cf_api_engine(r->api), &c, ids, CF_ARRAY_LEN(ids), &n, err, sizeof err);
    if (rc == CF_ENOENT) {
        cf_api_error(r, 400, "RestException",
                     "Cannot correlate message '%.128s': No process definition or execution "
                     "matches the parameters",
                     c.message);
        goto out;
    }
    if (rc == CF_EEXIST) {
        cf_api_error(r, 400, "RestException",
                     "Cannot correlate message '%.128s': it matches several executions (%s)",
                     c.message, err);
        goto out;
    }
    if (rc == CF_EINVAL || rc == CF_ETYPE || rc == CF_EINVALID) {
        cf_api_error(r, 400, "RestException", "Cannot correlate message '%.128s': %s", c.message,
                     err);
        goto out;
    }
    if (rc) {
        fail(r, rc, "message correlation");
        goto out;
    }
    if (!json_is_true(result)) {
        cf_api_no_content(r);
        goto out;
    }
    /* resultEnabled: one entry per instance reached. An instance newer than every instance
     * before the call was started by a message start event (resultType ProcessDefinition). */
    json_t *a = json_array();
    struct cf_tenants t = tenants_of(r);
    for (size_t i = 0; i < n && i < CF_ARRAY_LEN(ids); i++) {
        struct cf_inst_row inst;
        if (cf_query_instance_get(cf_api_store(r->api), &t, ids[i], &inst) != 0)
            continue;
        char *key = definition_key_of(r, inst.definition_id);
        bool started = inst.id > newest_before;
        json_t *e = json_object();
        set(e, "resultType", json_string(started ? "ProcessDefinition" : "Execution"));
        if (started) {
            set(e, "processInstance", instance_json(r, &inst, key));
            set(e, "execution", json_null());
        } else {
            set(e, "processInstance", json_null());
            set(e, "execution",
                json_pack("{s:o, s:o, s:b, s:o}", "id", jid(inst.id), "processInstanceId",
                          jid(inst.id), "ended", !inst_running(&inst), "tenantId",
                          jtenant(inst.tenant_id)));
        }
        json_array_append_new(a, e);
        free(key);
        cf_inst_row_free(&inst);
    }
    cf_api_respond_json(r, 200, a);
out:
    vars_free(&keys);
    vars_free(&pvars);
    json_decref(body);
}

/* ---- /history/activity-instance ------------------------------------------------------------ */

static int add_hist(void *arg, const struct cf_hist_row *h, const char *tenant, int64_t def_id,
                    const char *def_key)
{
    json_t *a = arg;
    char id[300];
    snprintf(id, sizeof id, "%s:%" PRId64, h->activity_id ? h->activity_id : "", h->id);
    json_t *o = json_object();
    set(o, "id", jstr(id));
    set(o, "parentActivityInstanceId", jid(h->instance_id));
    set(o, "activityId", jstr(h->activity_id));
    set(o, "activityName", jstr(h->activity_name));
    set(o, "activityType", jstr(h->activity_type));
    set(o, "processDefinitionKey", jstr(def_key));
    set(o, "processDefinitionId", jid(def_id));
    set(o, "processInstanceId", jid(h->instance_id));
    set(o, "executionId", jid(h->execution_id));
    set(o, "taskId", json_null());
    set(o, "calledProcessInstanceId", json_null());
    set(o, "calledCaseInstanceId", json_null());
    set(o, "assignee", json_null());
    set(o, "startTime", jdate(h->started_at));
    set(o, "endTime", jdate(h->end_state ? h->ended_at : 0));
    set(o, "durationInMillis",
        h->end_state && h->ended_at >= h->started_at
            ? json_integer((json_int_t)(h->ended_at - h->started_at))
            : json_null());
    bool canceled = h->end_state && strcmp(h->end_state, "canceled") == 0;
    bool end_event = h->activity_type && strstr(h->activity_type, "EndEvent") != NULL;
    set(o, "canceled", json_boolean(canceled));
    set(o, "completeScope", json_boolean(end_event && h->end_state && !canceled));
    set(o, "tenantId", jtenant(tenant));
    set(o, "removalTime", json_null());
    set(o, "rootProcessInstanceId", jid(h->instance_id));
    json_array_append_new(a, o);
    return 0;
}

static void h_hist_activities(struct cf_api_request *r)
{
    struct cf_hist_filter f = {0};
    char inst[QBUF], act[QBUF], sort_by[64], sort_order[16];
    int ri, ra, rs, ro;
    struct scope sc;
    if ((ri = qparam(r, "processInstanceId", inst, QBUF)) < 0 ||
        (ra = qparam(r, "activityId", act, QBUF)) < 0 ||
        (rs = qparam(r, "sortBy", sort_by, sizeof sort_by)) < 0 ||
        (ro = qparam(r, "sortOrder", sort_order, sizeof sort_order)) < 0 ||
        qpage(r, &f.first, &f.max))
        return;
    if ((rs == 0) != (ro == 0)) {
        cf_api_error(r, 400, NULL,
                     "Only a single sorting parameter specified. sortBy and "
                     "sortOrder required");
        return;
    }
    if (rs == 0 && strcmp(sort_by, "startTime") != 0 && strcmp(sort_by, "occurrence") != 0) {
        cf_api_error(r, 400, NULL,
                     "Cannot set query parameter 'sortBy' to value '%.32s': certflow sorts by "
                     "startTime or occurrence",
                     sort_by);
        return;
    }
    if (ro == 0 && strcmp(sort_order, "asc") != 0 && strcmp(sort_order, "desc") != 0) {
        cf_api_error(r, 400, NULL, "Cannot set query parameter 'sortOrder' to value '%.15s'",
                     sort_order);
        return;
    }
    if (scope_from_query(r, &sc))
        return;
    f.desc = ro == 0 && strcmp(sort_order, "desc") == 0;
    if (ri == 0 && parse_id(inst, &f.instance_id))
        f.instance_id = INT64_MAX;
    f.activity_id = ra == 0 ? act : NULL;
    struct cf_tenants t = scope_tenants(&sc);
    json_t *a = json_array();
    int rc = cf_query_history(cf_api_store(r->api), &t, &f, add_hist, a);
    scope_free(&sc);
    if (rc) {
        json_decref(a);
        fail(r, rc, "reading history");
        return;
    }
    cf_api_respond_json(r, 200, a);
}

/* ---- registration -------------------------------------------------------------------------- */

#define BASE "/engine-rest"

static const struct cf_route routes[] = {
    {"GET", BASE "/version", h_version, 0, 0},
    {"GET", BASE "/deployment", h_deployments, 0, 0},
    {"GET", BASE "/deployment/count", h_deployment_count, 0, 0},
    {"GET", BASE "/deployment/{id}", h_deployment_get, 0, 0},
    {"POST", BASE "/deployment/create", h_deploy, CF_ROUTE_ADMIN, DEPLOY_BODY_LIMIT},
    {"GET", BASE "/process-definition", h_definitions, 0, 0},
    {"GET", BASE "/process-definition/count", h_definition_count, 0, 0},
    {"GET", BASE "/process-definition/{id}", h_definition_get, 0, 0},
    {"GET", BASE "/process-definition/{id}/xml", h_definition_xml, 0, 0},
    {"GET", BASE "/process-definition/key/{key}", h_definition_get_key, 0, 0},
    {"GET", BASE "/process-definition/key/{key}/xml", h_definition_xml_key, 0, 0},
    {"GET", BASE "/process-definition/key/{key}/tenant-id/{tenantId}", h_definition_get_key_tenant,
     0, 0},
    {"GET", BASE "/process-definition/key/{key}/tenant-id/{tenantId}/xml",
     h_definition_xml_key_tenant, 0, 0},
    {"POST", BASE "/process-definition/{id}/start", h_start_id, 0, JSON_BODY_LIMIT},
    {"POST", BASE "/process-definition/key/{key}/start", h_start_key, 0, JSON_BODY_LIMIT},
    {"POST", BASE "/process-definition/key/{key}/tenant-id/{tenantId}/start", h_start_key_tenant, 0,
     JSON_BODY_LIMIT},
    {"GET", BASE "/process-instance", h_instances, 0, 0},
    {"GET", BASE "/process-instance/count", h_instance_count, 0, 0},
    {"GET", BASE "/process-instance/{id}", h_instance_get, 0, 0},
    {"DELETE", BASE "/process-instance/{id}", h_instance_delete, CF_ROUTE_ADMIN, 0},
    {"GET", BASE "/process-instance/{id}/activity-instances", h_activity_instances, 0, 0},
    {"GET", BASE "/process-instance/{id}/variables", h_variables_get, 0, 0},
    {"GET", BASE "/process-instance/{id}/variables/{name}", h_variable_get, 0, 0},
    {"POST", BASE "/process-instance/{id}/variables", h_variables_post, CF_ROUTE_ADMIN,
     JSON_BODY_LIMIT},
    {"GET", BASE "/incident", h_incidents, 0, 0},
    {"GET", BASE "/incident/count", h_incident_count, 0, 0},
    {"GET", BASE "/job/{id}", h_job_get, 0, 0},
    {"PUT", BASE "/job/{id}/retries", h_job_retries, CF_ROUTE_ADMIN, 0},
    {"POST", BASE "/message", h_message, 0, JSON_BODY_LIMIT},
    {"GET", BASE "/history/activity-instance", h_hist_activities, 0, 0},
    {"GET", BASE "/history/process-instance", h_hist_instances, 0, 0},
    {"GET", BASE "/history/process-instance/count", h_hist_instance_count, 0, 0},
    {"GET", BASE "/history/process-instance/{id}", h_hist_instance_get, 0, 0},
    {"GET", BASE "/history/variable-instance", h_hist_variables, 0, 0},
};

void cf_api_engine_rest_routes(struct cf_api *api)
{
    cf_api_register(api, routes, CF_ARRAY_LEN(routes));
}
