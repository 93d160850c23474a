/*
 * Owned typed values (see value.h).
 */
#include "base/value.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cf_val_free(struct cf_val *v)
{
    switch (v->type) {
    case CF_VALUE_STRING:
        free(v->u.s);
        break;
    case CF_VALUE_BYTES:
        free(v->u.bytes.p);
        break;
    case CF_VALUE_JSON:
        json_decref(v->u.json);
        break;
    default:
        break;
    }
    memset(v, 0, sizeof(*v));
    v->type = CF_VALUE_NULL;
}

void cf_val_set_null(struct cf_val *v)
{
    cf_val_free(v);
}

void cf_val_set_string(struct cf_val *v, const char *s)
{
    cf_val_set_stringn(v, s, strlen(s));
}

void cf_val_set_stringn(struct cf_val *v, const char *s, size_t n)
{
    char *copy = cf_xmalloc(n + 1);
    memcpy(copy, s, n);
    copy[n] = '\0';
    cf_val_take_string(v, copy);
}

void cf_val_take_string(struct cf_val *v, char *s)
{
    cf_val_free(v);
    v->type = CF_VALUE_STRING;
    v->u.s = s;
}

void cf_val_set_long(struct cf_val *v, int64_t l)
{
    cf_val_free(v);
    v->type = CF_VALUE_LONG;
    v->u.l = l;
}

void cf_val_set_double(struct cf_val *v, double d)
{
    cf_val_free(v);
    v->type = CF_VALUE_DOUBLE;
    v->u.d = d;
}

void cf_val_set_bool(struct cf_val *v, bool b)
{
    cf_val_free(v);
    v->type = CF_VALUE_BOOLEAN;
    v->u.b = b;
}

void cf_val_set_bytes(struct cf_val *v, const uint8_t *p, size_t len)
{
    uint8_t *copy = cf_xmemdup(p, len);
    cf_val_free(v);
    v->type = CF_VALUE_BYTES;
    v->u.bytes.p = copy;
    v->u.bytes.len = len;
}

void cf_val_set_date(struct cf_val *v, int64_t ms)
{
    cf_val_free(v);
    v->type = CF_VALUE_DATE;
    v->u.l = ms;
}

void cf_val_take_json(struct cf_val *v, json_t *j)
{
    cf_val_free(v);
    v->type = CF_VALUE_JSON;
    v->u.json = j;
}

void cf_val_copy(struct cf_val *dst, const struct cf_val *src)
{
    if (dst == src)
        return;
    switch (src->type) {
    case CF_VALUE_STRING:
        cf_val_set_string(dst, src->u.s);
        break;
    case CF_VALUE_BYTES:
        cf_val_set_bytes(dst, src->u.bytes.p, src->u.bytes.len);
        break;
    case CF_VALUE_JSON:
        cf_val_take_json(dst, json_incref(src->u.json));
        break;
    default:
        cf_val_free(dst);
        *dst = *src;
        break;
    }
}

void cf_val_move(struct cf_val *dst, struct cf_val *src)
{
    if (dst == src)
        return;
    cf_val_free(dst);
    *dst = *src;
    memset(src, 0, sizeof(*src));
    src->type = CF_VALUE_NULL;
}

void cf_val_to_abi(const struct cf_val *v, struct cf_value *out, char **scratch)
{
    memset(out, 0, sizeof(*out));
    *scratch = NULL;
    out->type = v->type;
    switch (v->type) {
    case CF_VALUE_STRING:
        out->str = v->u.s;
        out->len = strlen(v->u.s);
        break;
    case CF_VALUE_LONG:
    case CF_VALUE_DATE:
        out->l = v->u.l;
        break;
    case CF_VALUE_DOUBLE:
        out->d = v->u.d;
        break;
    case CF_VALUE_BOOLEAN:
        out->b = v->u.b;
        break;
    case CF_VALUE_BYTES:
        out->bytes = v->u.bytes.p;
        out->len = v->u.bytes.len;
        break;
    case CF_VALUE_JSON:
        *scratch = json_dumps(v->u.json, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!*scratch)
            *scratch = cf_xstrdup("null");
        out->str = *scratch;
        out->len = strlen(*scratch);
        break;
    case CF_VALUE_NULL:
        break;
    }
}

int cf_val_from_abi(struct cf_val *v, const struct cf_value *in, char *err, size_t errlen)
{
    switch (in->type) {
    case CF_VALUE_NULL:
        cf_val_set_null(v);
        return 0;
    case CF_VALUE_STRING:
        if (!in->str)
            break;
        cf_val_set_string(v, in->str);
        return 0;
    case CF_VALUE_LONG:
        cf_val_set_long(v, in->l);
        return 0;
    case CF_VALUE_DATE:
        cf_val_set_date(v, in->l);
        return 0;
    case CF_VALUE_DOUBLE:
        if (!isfinite(in->d)) {
            cf_errf(err, errlen, "a Double must be finite");
            return CF_EINVAL;
        }
        cf_val_set_double(v, in->d);
        return 0;
    case CF_VALUE_BOOLEAN:
        cf_val_set_bool(v, in->b != 0);
        return 0;
    case CF_VALUE_BYTES:
        if (!in->bytes && in->len)
            break;
        cf_val_set_bytes(v, in->bytes, in->len);
        return 0;
    case CF_VALUE_JSON: {
        if (!in->str)
            break;
        json_error_t je;
        json_t *j = json_loadb(in->str, in->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!j) {
            cf_errf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column,
                    je.text);
            return CF_EPARSE;
        }
        cf_val_take_json(v, j);
        return 0;
    }
    }
    cf_errf(err, errlen, "invalid value of type %d", (int)in->type);
    return CF_EINVAL;
}

static const char *type_names[] = {"Null",    "String", "Long", "Double",
                                   "Boolean", "Bytes",  "Json", "Date"};

const char *cf_val_type_name(enum cf_value_type t)
{
    if ((unsigned)t < CF_ARRAY_LEN(type_names))
        return type_names[t];
    return "Unknown";
}

int cf_val_type_parse(const char *name, enum cf_value_type *out)
{
    for (unsigned i = 0; i < CF_ARRAY_LEN(type_names); i++) {
        if (strcasecmp(name, type_names[i]) == 0) {
            *out = (enum cf_value_type)i;
            return 0;
        }
    }
    if (strcasecmp(name, "Integer") == 0 || strcasecmp(name, "Short") == 0) {
        *out = CF_VALUE_LONG;
        return 0;
    }
    return CF_EINVAL;
}

static void render_double(double d, struct cf_buf *out)
{
    char tmp[64];
    /* Shortest text that reads back to the same double. */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    cf_buf_puts(out, tmp);
    if (!strpbrk(tmp, ".eEni"))
        cf_buf_puts(out, ".0");
}

void cf_val_to_text(const struct cf_val *v, struct cf_buf *out)
{
    switch (v->type) {
    case CF_VALUE_NULL:
        cf_buf_puts(out, "null");
        break;
    case CF_VALUE_STRING:
        cf_buf_puts(out, v->u.s);
        break;
    case CF_VALUE_LONG:
        cf_buf_printf(out, "%" PRId64, v->u.l);
        break;
    case CF_VALUE_DOUBLE:
        render_double(v->u.d, out);
        break;
    case CF_VALUE_BOOLEAN:
        cf_buf_puts(out, v->u.b ? "true" : "false");
        break;
    case CF_VALUE_BYTES:
        cf_buf_append(out, v->u.bytes.p, v->u.bytes.len);
        break;
    case CF_VALUE_JSON: {
        char *s = json_dumps(v->u.json, JSON_COMPACT | JSON_ENCODE_ANY);
        cf_buf_puts(out, s ? s : "null");
        free(s);
        break;
    }
    case CF_VALUE_DATE: {
        char ts[CF_TIME_ISO_LEN];
        cf_time_iso((uint64_t)v->u.l, ts);
        cf_buf_puts(out, ts);
        break;
    }
    }
}

void cf_val_render(const struct cf_val *v, struct cf_buf *out)
{
    switch (v->type) {
    case CF_VALUE_STRING: {
        json_t *s = json_string(v->u.s);
        char *txt = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        cf_buf_puts(out, txt ? txt : "\"<invalid UTF-8>\"");
        free(txt);
        json_decref(s);
        break;
    }
    case CF_VALUE_BYTES:
        cf_buf_printf(out, "<%zu bytes>", v->u.bytes.len);
        break;
    default:
        cf_val_to_text(v, out);
        break;
    }
}

bool cf_val_equal(const struct cf_val *a, const struct cf_val *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case CF_VALUE_NULL:
        return true;
    case CF_VALUE_STRING:
        return strcmp(a->u.s, b->u.s) == 0;
    case CF_VALUE_LONG:
    case CF_VALUE_DATE:
        return a->u.l == b->u.l;
    case CF_VALUE_DOUBLE:
        return a->u.d == b->u.d;
    case CF_VALUE_BOOLEAN:
        return a->u.b == b->u.b;
    case CF_VALUE_BYTES:
        return a->u.bytes.len == b->u.bytes.len &&
               (a->u.bytes.len == 0 || memcmp(a->u.bytes.p, b->u.bytes.p, a->u.bytes.len) == 0);
    case CF_VALUE_JSON:
        return json_equal(a->u.json, b->u.json) != 0;
    }
    return false;
}
