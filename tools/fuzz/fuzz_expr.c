/*
 * libFuzzer target for the ${...} expression evaluator (engine/expr/expr.c). Each input is one
 * template: it is compiled, its identifiers are listed, and it is evaluated as a value and as a
 * condition against a fixed set of variables of every type, including nested JSON, so that the
 * evaluator's paths run as well as the parser's. Errors are expected; crashes, leaks and
 * undefined behaviour are what the sanitizers report. Building fuzz targets into CMake is left
 * to tools/fuzz's build; from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *     -I engine/include -I engine tools/fuzz/fuzz_expr.c engine/expr/expr.c \
 *     engine/base/value.c engine/base/base.c engine/base/error.c engine/base/log.c \
 *     $(pkg-config --cflags --libs jansson libcrypto) -lm -o build/fuzz_expr
 *   ./build/fuzz_expr -max_len=4096
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/value.h"
#include "expr/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_var {
    const char *name;
    struct cf_val val;
};

static struct fuzz_var vars[12];
static size_t nvars;

static void add_string(const char *name, const char *s)
{
    vars[nvars].name = name;
    cf_val_set_string(&vars[nvars++].val, s);
}

static void add_json(const char *name, const char *text)
{
    vars[nvars].name = name;
    cf_val_take_json(&vars[nvars++].val, json_loads(text, JSON_DECODE_ANY, NULL));
}

/* Variables live for the whole run: libFuzzer never returns to let them be freed. */
static void init_vars(void)
{
    static const uint8_t bytes[] = {0, 1, 2};
    add_string("s", "hello");
    add_string("n", "42");
    vars[nvars].name = "l";
    cf_val_set_long(&vars[nvars++].val, INT64_MAX);
    vars[nvars].name = "d";
    cf_val_set_double(&vars[nvars++].val, -2.5);
    vars[nvars].name = "t";
    cf_val_set_bool(&vars[nvars++].val, true);
    vars[nvars].name = "nul";
    cf_val_set_null(&vars[nvars++].val);
    vars[nvars].name = "b";
    cf_val_set_bytes(&vars[nvars++].val, bytes, sizeof(bytes));
    vars[nvars].name = "date";
    cf_val_set_date(&vars[nvars++].val, 1700000000000);
    add_json("o", "{\"a\":{\"b\":[1,2.5,\"x\",null,true,{\"c\":[]}]},\"s\":\"\",\"0\":{}}");
    add_json("a", "[[0,[1,[2]]],{\"k\":\"v\"},-9223372036854775808]");
    add_json("js", "\"json string\"");
}

static int lookup(void *ctx, const char *name, const struct cf_val **out)
{
    (void)ctx;
    for (size_t i = 0; i < nvars; i++) {
        if (strcmp(vars[i].name, name) == 0) {
            *out = &vars[i].val;
            return 0;
        }
    }
    return CF_ENOENT;
}

static void count_ident(void *arg, const char *name)
{
    size_t *n = arg;
    *n += strlen(name) > 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (nvars == 0)
        init_vars();
    /* The compiler takes C text: stop at the first NUL, as a caller's string would. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    char err[256];
    struct cf_expr *e = NULL;
    if (cf_expr_compile(text, &e, err, sizeof(err)) == 0) {
        size_t n = 0;
        cf_expr_foreach_identifier(e, count_ident, &n);
        (void)cf_expr_single_identifier(e);
        (void)cf_expr_is_dynamic(e);
        struct cf_val v = CF_VAL_NULL_INIT;
        if (cf_expr_eval(e, lookup, NULL, &v, err, sizeof(err)) == 0)
            cf_val_free(&v);
        bool b;
        (void)cf_expr_eval_bool(e, lookup, NULL, &b, err, sizeof(err));
        cf_expr_free(e);
    }
    free(text);
    return 0;
}
