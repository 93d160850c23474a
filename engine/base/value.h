/*
 * Owned, typed values: the content of process variables and the results of expressions.
 * A struct cf_val owns what it points to (string, bytes, JSON); cf_val_free() releases it and
 * leaves CF_VALUE_NULL. Types are those of plugin.h (Camunda 7's variable types).
 */
#ifndef CF_VALUE_H
#define CF_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/base.h"
#include "certflow/plugin.h"

struct cf_val {
    enum cf_value_type type;
    union {
        char *s;   /* STRING */
        int64_t l; /* LONG, DATE */
        double d;
        bool b;
        struct {
            uint8_t *p;
            size_t len;
        } bytes;
        json_t *json; /* JSON: owned reference */
    } u;
};

#define CF_VAL_NULL_INIT                                                                           \
    {                                                                                              \
        .type = CF_VALUE_NULL                                                                      \
    }

void cf_val_free(struct cf_val *v);
void cf_val_set_null(struct cf_val *v);
void cf_val_set_string(struct cf_val *v, const char *s);
void cf_val_set_stringn(struct cf_val *v, const char *s, size_t n);
void cf_val_take_string(struct cf_val *v, char *s); /* takes ownership of s */
void cf_val_set_long(struct cf_val *v, int64_t l);
void cf_val_set_double(struct cf_val *v, double d);
void cf_val_set_bool(struct cf_val *v, bool b);
void cf_val_set_bytes(struct cf_val *v, const uint8_t *p, size_t len);
void cf_val_set_date(struct cf_val *v, int64_t ms);
/* Takes one reference to `j`. */
void cf_val_take_json(struct cf_val *v, json_t *j);
/* Deep enough copy: strings and bytes are copied, JSON gets a new reference (JSON values are
 * never mutated in place, so sharing is safe). */
void cf_val_copy(struct cf_val *dst, const struct cf_val *src);
void cf_val_move(struct cf_val *dst, struct cf_val *src);

/* Converts between the owned value and the ABI's borrowed view (JSON is rendered as text and kept
 * in `*scratch`, which the caller frees). */
void cf_val_to_abi(const struct cf_val *v, struct cf_value *out, char **scratch);
int cf_val_from_abi(struct cf_val *v, const struct cf_value *in, char *err, size_t errlen);

/* "String", "Long", "Double", "Boolean", "Bytes", "Json", "Date", "Null". */
const char *cf_val_type_name(enum cf_value_type t);
int cf_val_type_parse(const char *name, enum cf_value_type *out);

/* Human-readable rendering for traces and the CLI: strings quoted as JSON strings, bytes as
 * "<N bytes>", JSON compact, dates ISO-8601. */
void cf_val_render(const struct cf_val *v, struct cf_buf *out);
/* Text form used where a string is needed (parameters, string concatenation): strings as they
 * are, numbers in shortest form, booleans "true"/"false", null "null", JSON compact. */
void cf_val_to_text(const struct cf_val *v, struct cf_buf *out);
bool cf_val_equal(const struct cf_val *a, const struct cf_val *b);

#endif
