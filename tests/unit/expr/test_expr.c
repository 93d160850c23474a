/*
 * Unit tests of the ${...} expression evaluator (engine/expr/expr.c): typed results of many
 * expressions over a fixed set of variables, error messages with their columns, short-circuit
 * evaluation, JSON navigation, templates, the identifier helpers, the depth and length limits,
 * and a seeded random-input loop that must never crash (the suite runs under ASan and UBSan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/value.h"
#include "expr/expr.h"

/* ---------------------------------------------------------------------------------------------
 * Variables
 */

struct var {
    const char *name;
    struct cf_val val;
};

#define MAX_VARS 64
#define DEEP_LEVELS 63

static struct var vars[MAX_VARS];
static size_t nvars;
/* How often the lookup was asked for "boom", to prove that branches were not evaluated. */
static int boom_lookups;

static struct cf_val *add_var(const char *name)
{
    assert_true(nvars < MAX_VARS);
    vars[nvars].name = name;
    vars[nvars].val.type = CF_VALUE_NULL;
    return &vars[nvars++].val;
}

static int lookup(void *ctx, const char *name, const struct cf_val **out)
{
    (void)ctx;
    if (strcmp(name, "boom") == 0)
        boom_lookups++;
    if (strcmp(name, "broken") == 0)
        return CF_EIO;
    for (size_t i = 0; i < nvars; i++) {
        if (strcmp(vars[i].name, name) == 0) {
            *out = &vars[i].val;
            return 0;
        }
    }
    return CF_ENOENT;
}

static json_t *parse_json(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    if (!j)
        fail_msg("bad test JSON '%s': %s", text, je.text);
    return j;
}

static int setup_vars(void **state)
{
    (void)state;
    static const uint8_t three[] = {1, 2, 3};
    cf_val_set_string(add_var("s"), "hello");
    cf_val_set_string(add_var("n5"), "5");
    cf_val_set_string(add_var("sdec"), "2.5");
    cf_val_set_string(add_var("empty_s"), "");
    cf_val_set_string(add_var("flag_s"), "TRUE");
    cf_val_set_string(add_var("yes"), "yes");
    cf_val_set_long(add_var("l"), 42);
    cf_val_set_long(add_var("big"), INT64_MAX);
    cf_val_set_long(add_var("small"), INT64_MIN);
    cf_val_set_double(add_var("d"), 2.5);
    cf_val_set_bool(add_var("t"), true);
    cf_val_set_bool(add_var("f"), false);
    cf_val_set_null(add_var("nul"));
    cf_val_set_bytes(add_var("bytes"), three, sizeof(three));
    cf_val_set_bytes(add_var("nobytes"), NULL, 0);
    cf_val_set_date(add_var("date"), 1000);
    cf_val_set_date(add_var("date2"), 2000);
    cf_val_set_long(add_var("_u1"), 1);
    cf_val_set_long(add_var("$v"), 2);
    cf_val_set_long(add_var("gr\xc3\xb6\xc3\x9f"
                            "e"),
                    3);
    cf_val_take_json(add_var("obj"),
                     parse_json("{\"name\":\"acme\",\"count\":3,\"ratio\":0.5,\"ok\":true,"
                                "\"none\":null,\"tags\":[\"a\",\"b\"],"
                                "\"nested\":{\"deep\":{\"x\":1}},\"empty_arr\":[],"
                                "\"empty_obj\":{},\"key with space\":7,\"empty\":\"yes\","
                                "\"7\":\"seven\"}"));
    cf_val_take_json(add_var("arr"), parse_json("[10,\"x\",{\"y\":2}]"));
    cf_val_take_json(add_var("jstr"), parse_json("\"abc\""));
    cf_val_take_json(add_var("jtrue"), parse_json("true"));

    /* {"b":{"b":...{"b":1}}}, DEEP_LEVELS levels, for the deepest path the parser accepts. */
    json_t *deep = json_integer(1);
    for (int i = 0; i < DEEP_LEVELS; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "b", deep);
        deep = o;
    }
    cf_val_take_json(add_var("deep"), deep);

    char *mb = malloc(1024 * 1024 + 1);
    assert_non_null(mb);
    memset(mb, 'x', 1024 * 1024);
    mb[1024 * 1024] = '\0';
    cf_val_take_string(add_var("mb"), mb);
    return 0;
}

static int teardown_vars(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvars; i++)
        cf_val_free(&vars[i].val);
    nvars = 0;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static char *repeat(const char *prefix, const char *piece, size_t n, const char *middle,
                    const char *piece2, size_t n2, const char *suffix)
{
    size_t len = strlen(prefix) + strlen(piece) * n + strlen(middle) + strlen(piece2) * n2 +
                 strlen(suffix) + 1;
    char *s = malloc(len);
    assert_non_null(s);
    size_t pos = 0;
    memcpy(s + pos, prefix, strlen(prefix));
    pos += strlen(prefix);
    for (size_t i = 0; i < n; i++) {
        memcpy(s + pos, piece, strlen(piece));
        pos += strlen(piece);
    }
    memcpy(s + pos, middle, strlen(middle));
    pos += strlen(middle);
    for (size_t i = 0; i < n2; i++) {
        memcpy(s + pos, piece2, strlen(piece2));
        pos += strlen(piece2);
    }
    memcpy(s + pos, suffix, strlen(suffix) + 1);
    return s;
}

/* Compiles and evaluates; returns the first non-zero code. */
static int run(const char *text, struct cf_val *out, char *err, size_t errlen)
{
    struct cf_expr *e = NULL;
    int rc = cf_expr_compile(text, &e, err, errlen);
    if (rc) {
        assert_null(e);
        return rc;
    }
    assert_non_null(e);
    rc = cf_expr_eval(e, lookup, NULL, out, err, errlen);
    cf_expr_free(e);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Typed results
 */

struct ok_case {
    const char *text;
    enum cf_value_type type;
    int64_t l;       /* LONG, DATE; BOOLEAN as 0/1 */
    double d;        /* DOUBLE */
    const char *s;   /* STRING; JSON as compact text */
    size_t byteslen; /* BYTES */
};

#define L(t, v)                                                                                    \
    {                                                                                              \
        t, CF_VALUE_LONG, v, 0, NULL, 0                                                            \
    }
#define D(t, v)                                                                                    \
    {                                                                                              \
        t, CF_VALUE_DOUBLE, 0, v, NULL, 0                                                          \
    }
#define B(t, v)                                                                                    \
    {                                                                                              \
        t, CF_VALUE_BOOLEAN, v, 0, NULL, 0                                                         \
    }
#define S(t, v)                                                                                    \
    {                                                                                              \
        t, CF_VALUE_STRING, 0, 0, v, 0                                                             \
    }
#define J(t, v)                                                                                    \
    {                                                                                              \
        t, CF_VALUE_JSON, 0, 0, v, 0                                                               \
    }
#define N(t)                                                                                       \
    {                                                                                              \
        t, CF_VALUE_NULL, 0, 0, NULL, 0                                                            \
    }

static const struct ok_case ok_cases[] = {
    /* Literals. */
    L("${1}", 1),
    L("${0}", 0),
    L("${9223372036854775807}", INT64_MAX),
    L("${-9223372036854775807 - 1}", INT64_MIN),
    D("${1.5}", 1.5),
    D("${.5}", 0.5),
    D("${1.}", 1.0),
    D("${1e3}", 1000.0),
    D("${2E-1}", 0.2),
    D("${1.5e+2}", 150.0),
    B("${true}", 1),
    B("${false}", 0),
    N("${null}"),
    S("${'abc'}", "abc"),
    S("${\"abc\"}", "abc"),
    S("${''}", ""),
    S("${'it\\'s'}", "it's"),
    S("${\"a\\\"b\"}", "a\"b"),
    S("${'a\\\"b'}", "a\"b"),
    S("${\"it\\'s\"}", "it's"),
    S("${'a\\\\b'}", "a\\b"),
    S("${'}'}", "}"),
    S("${'${x}'}", "${x}"),
    S("${\"mixed 'q'\"}", "mixed 'q'"),
    L("${ \t\n1\r\n+\f2 }", 3),

    /* Arithmetic. */
    L("${1 + 2}", 3),
    L("${7 - 10}", -3),
    L("${6 * 7}", 42),
    D("${7 / 2}", 3.5),
    D("${4 / 2}", 2.0),
    D("${7 div 2}", 3.5),
    L("${7 % 3}", 1),
    L("${-7 % 3}", -1),
    L("${7 mod 3}", 1),
    D("${7.5 % 2}", 1.5),
    D("${1 + 2.5}", 3.5),
    D("${2.5 - 1}", 1.5),
    D("${0.5 * 4}", 2.0),
    L("${2 * 3 + 4}", 10),
    L("${4 + 2 * 3}", 10),
    L("${2 * (3 + 4)}", 14),
    L("${10 - 2 - 3}", 5),
    D("${100 / 10 / 5}", 2.0),
    L("${20 % 7 % 4}", 2),
    L("${-l}", -42),
    L("${- -3}", 3),
    L("${--3}", 3),
    D("${-d}", -2.5),
    L("${l + n5}", 47),
    L("${n5 + n5}", 10),
    D("${sdec * 2}", 5.0),
    L("${nul + 1}", 1),
    L("${-nul}", 0),
    L("${small % -1}", 0),
    L("${big - 1}", INT64_MAX - 1),
    L("${small + 1}", INT64_MIN + 1),
    L("${obj.count * 2}", 6),
    D("${obj.ratio + 1}", 1.5),
    L("${_u1 + $v + gr\xc3\xb6\xc3\x9f"
      "e}",
      6),
    L("${1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+"
      "1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1}",
      80),

    /* Comparisons. */
    B("${1 < 2}", 1),
    B("${2 lt 1}", 0),
    B("${2 > 1}", 1),
    B("${1 gt 2}", 0),
    B("${2 <= 2}", 1),
    B("${3 le 2}", 0),
    B("${2 >= 3}", 0),
    B("${2 ge 2}", 1),
    B("${1 == 1}", 1),
    B("${1 eq 2}", 0),
    B("${1 != 2}", 1),
    B("${1 ne 1}", 0),
    B("${1 == 1.0}", 1),
    B("${2 > 1.5}", 1),
    B("${1.5 < 2}", 1),
    B("${2 < 2.5}", 1),
    B("${2 == 2.5}", 0),
    B("${-2 > -2.5}", 1),
    B("${2.5 >= 3}", 0),
    B("${9007199254740993 == 9007199254740992.0}", 0),
    B("${9007199254740993 > 9007199254740992.0}", 1),
    B("${9007199254740992 == 9007199254740992.0}", 1),
    B("${big < 9.3e18}", 1),
    B("${small > -9.3e18}", 1),
    B("${-1 < -0.5}", 1),
    B("${l == '42'}", 1),
    B("${'10' > 9}", 1),
    B("${n5 < 10}", 1),
    B("${'2.5' == d}", 1),
    B("${'1e1' == 10}", 1),
    B("${'abc' < 'abd'}", 1),
    B("${'b' > 'abc'}", 1),
    B("${'10' < '9'}", 1),
    B("${s == 'hello'}", 1),
    B("${s != 'hello'}", 0),
    B("${s eq \"hello\"}", 1),
    B("${nul == null}", 1),
    B("${null == null}", 1),
    B("${nul == 0}", 0),
    B("${s == null}", 0),
    B("${null != 1}", 1),
    B("${nul != null}", 0),
    B("${nul < 1}", 0),
    B("${1 > nul}", 0),
    B("${null <= null}", 1),
    B("${null < null}", 0),
    B("${t == true}", 1),
    B("${t != f}", 1),
    B("${flag_s == true}", 1),
    B("${false < true}", 1),
    B("${date < date2}", 1),
    B("${date == date}", 1),
    B("${bytes == bytes}", 1),
    B("${bytes != nobytes}", 1),
    B("${obj.tags == obj.tags}", 1),
    B("${obj == arr}", 0),
    B("${1 == 1 == true}", 1),
    B("${1 < 2 == true}", 1),
    B("${1 + 2 == 3 && 2 * 2 == 4}", 1),

    /* Logic. */
    B("${true && false}", 0),
    B("${true and true}", 1),
    B("${false || true}", 1),
    B("${false or false}", 0),
    B("${!true}", 0),
    B("${not false}", 1),
    B("${!!true}", 1),
    B("${t && !f}", 1),
    B("${true || false && false}", 1),
    B("${(true || false) && false}", 0),
    B("${!nul}", 1),
    B("${flag_s && true}", 1),
    B("${'' || false}", 0),
    B("${'False' || f}", 0),
    B("${f || f || f || t}", 1),
    B("${t && t && t && f}", 0),

    /* empty. */
    B("${empty nul}", 1),
    B("${empty ''}", 1),
    B("${empty empty_s}", 1),
    B("${empty s}", 0),
    B("${empty obj.empty_arr}", 1),
    B("${empty obj.empty_obj}", 1),
    B("${empty obj.tags}", 0),
    B("${empty obj}", 0),
    B("${empty obj.none}", 1),
    B("${empty obj.missing}", 1),
    B("${empty l}", 0),
    B("${not empty s}", 1),
    B("${!empty s}", 1),
    B("${empty nobytes}", 1),
    B("${empty bytes}", 0),
    B("${empty jstr}", 0),

    /* ?: */
    L("${true ? 1 : 2}", 1),
    L("${false ? 1 : 2}", 2),
    S("${l > 40 ? 'big' : 'small'}", "big"),
    L("${f ? 1 : t ? 2 : 3}", 2),
    L("${f ? 1 : f ? 2 : 3}", 3),
    S("${(1 > 2) ? 'a' : 'b'}", "b"),
    L("${t ? f ? 1 : 2 : 3}", 2),
    L("${nul ? 1 : 2}", 2),

    /* JSON navigation. */
    S("${obj.name}", "acme"),
    L("${obj.count}", 3),
    D("${obj.ratio}", 0.5),
    B("${obj.ok}", 1),
    N("${obj.none}"),
    N("${obj.missing}"),
    S("${obj.empty}", "yes"),
    S("${obj.tags[0]}", "a"),
    S("${obj.tags[1]}", "b"),
    N("${obj.tags[2]}"),
    N("${obj.tags[-1]}"),
    N("${obj.tags[9223372036854775807]}"),
    S("${obj['name']}", "acme"),
    L("${obj[\"key with space\"]}", 7),
    S("${obj[7]}", "seven"),
    L("${obj.nested.deep.x}", 1),
    L("${obj['nested']['deep'].x}", 1),
    L("${obj.nested['de' == 'de' ? 'deep' : 'x'].x}", 1),
    L("${arr[0]}", 10),
    L("${arr[2].y}", 2),
    S("${arr['1']}", "x"),
    S("${arr[1.0]}", "x"),
    S("${arr[obj.count - 2]}", "x"),
    J("${obj.tags}", "[\"a\",\"b\"]"),
    J("${obj.nested.deep}", "{\"x\":1}"),
    J("${arr[2]}", "{\"y\":2}"),
    B("${obj.count == 3}", 1),
    B("${obj.name == 'acme'}", 1),
    B("${obj.ok && true}", 1),
    B("${obj.ratio < 1}", 1),
    B("${jstr == 'abc'}", 1),
    B("${jtrue && true}", 1),
    B("${obj.tags[0] < obj.tags[1]}", 1),

    /* Variables keep their type. */
    L("${l}", 42),
    S("${s}", "hello"),
    D("${d}", 2.5),
    B("${t}", 1),
    N("${nul}"),
    J("${jstr}", "\"abc\""),
    J("${arr}", "[10,\"x\",{\"y\":2}]"),
    {"${date}", CF_VALUE_DATE, 1000, 0, NULL, 0},
    {"${bytes}", CF_VALUE_BYTES, 0, 0, NULL, 3},
    L("${(((l)))}", 42),

    /* Short-circuit: the branch not taken is not evaluated. */
    B("${nul != null && nul.y}", 0),
    B("${nul == null || nul.y}", 1),
    B("${false && undefined_var}", 0),
    B("${true || undefined_var}", 1),
    L("${true ? 1 : undefined_var}", 1),
    L("${false ? undefined_var : 2}", 2),
    B("${false && 1 / 0 > 1}", 0),
    B("${false and nul.y}", 0),
    B("${obj != null && obj.ok}", 1),

    /* Templates. */
    S("hello", "hello"),
    S("", ""),
    S("${s} world", "hello world"),
    S("a${l}b", "a42b"),
    S("${l}${l}", "4242"),
    L("#{l}", 42),
    S("x #{l} ${d}", "x 42 2.5"),
    S("${nul}!", "!"),
    S("cost: ${1/4}", "cost: 0.25"),
    S("v=${d * 2}", "v=5.0"),
    S("$ {l}", "$ {l}"),
    S("$", "$"),
    S("#", "#"),
    S("a}b", "a}b"),
    S("price $5 {x}", "price $5 {x}"),
    S("${'}'}x", "}x"),
    S("${jstr}-", "abc-"),
    S("t=${obj.tags}", "t=[\"a\",\"b\"]"),
    S("${t}/${obj.ok}", "true/true"),
    S("${obj.name}-${obj.count}", "acme-3"),
    S("$${l}", "$42"),
    S("${l}$", "42$"),
    S("${'${'}{l}", "${{l}"),
    S("line1\n${s}\nline3", "line1\nhello\nline3"),
};

static void check_ok(const struct ok_case *c)
{
    char err[512] = "";
    struct cf_val v = CF_VAL_NULL_INIT;
    int rc = run(c->text, &v, err, sizeof(err));
    if (rc != 0)
        fail_msg("'%s' failed: %s (%s)", c->text, err, cf_err_name(rc));
    if (v.type != c->type)
        fail_msg("'%s' gave a %s, expected a %s", c->text, cf_val_type_name(v.type),
                 cf_val_type_name(c->type));
    switch (c->type) {
    case CF_VALUE_LONG:
    case CF_VALUE_DATE:
        if (v.u.l != c->l)
            fail_msg("'%s' gave %lld, expected %lld", c->text, (long long)v.u.l, (long long)c->l);
        break;
    case CF_VALUE_DOUBLE:
        if (v.u.d != c->d)
            fail_msg("'%s' gave %.17g, expected %.17g", c->text, v.u.d, c->d);
        break;
    case CF_VALUE_BOOLEAN:
        if (v.u.b != (c->l != 0))
            fail_msg("'%s' gave %s", c->text, v.u.b ? "true" : "false");
        break;
    case CF_VALUE_STRING:
        if (strcmp(v.u.s, c->s) != 0)
            fail_msg("'%s' gave '%s', expected '%s'", c->text, v.u.s, c->s);
        break;
    case CF_VALUE_JSON: {
        char *dump = json_dumps(v.u.json, JSON_COMPACT | JSON_ENCODE_ANY);
        bool same = dump && strcmp(dump, c->s) == 0;
        if (!same)
            fail_msg("'%s' gave %s, expected %s", c->text, dump ? dump : "(null)", c->s);
        free(dump);
        break;
    }
    case CF_VALUE_BYTES:
        if (v.u.bytes.len != c->byteslen)
            fail_msg("'%s' gave %zu bytes", c->text, v.u.bytes.len);
        break;
    case CF_VALUE_NULL:
        break;
    }
    cf_val_free(&v);
}

static void test_typed_results(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++)
        check_ok(&ok_cases[i]);
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

enum stage { COMPILE, EVAL };

struct err_case {
    const char *text;
    enum stage stage;
    int rc;
    const char *msg; /* must occur in the error message */
};

static const struct err_case err_cases[] = {
    /* Syntax. */
    {"${a > }", COMPILE, CF_EEXPR,
     "expression error at column 7 of '${a > }': unexpected end of expression"},
    {"${}", COMPILE, CF_EEXPR, "column 3 of '${}': unexpected end of expression"},
    {"#{}", COMPILE, CF_EEXPR, "column 3 of '#{}': unexpected end of expression"},
    {"${1 +", COMPILE, CF_EEXPR,
     "column 6 of '${1 +': unexpected end of text: the expression has no closing '}'"},
    {"${l", COMPILE, CF_EEXPR, "column 4 of '${l': unexpected end of text"},
    {"text ${", COMPILE, CF_EEXPR, "column 8 of 'text ${': unexpected end of text"},
    {"${a b}", COMPILE, CF_EEXPR, "column 5 of '${a b}': unexpected 'b', expected '}'"},
    {"${1 2}", COMPILE, CF_EEXPR, "column 5 of '${1 2}': unexpected '2', expected '}'"},
    {"${(1 + 2}", COMPILE, CF_EEXPR,
     "column 9 of '${(1 + 2}': unexpected end of expression, expected ')'"},
    {"${a[1}", COMPILE, CF_EEXPR,
     "column 6 of '${a[1}': unexpected end of expression, expected ']'"},
    {"${true ? 1}", COMPILE, CF_EEXPR,
     "column 11 of '${true ? 1}': unexpected end of expression, "
     "expected ':'"},
    {"${a = 1}", COMPILE, CF_EEXPR, "column 5 of '${a = 1}': unexpected '=' (use '==' or 'eq'"},
    {"${a & b}", COMPILE, CF_EEXPR, "column 5 of '${a & b}': unexpected '&' (use '&&' or 'and')"},
    {"${a | b}", COMPILE, CF_EEXPR, "column 5 of '${a | b}': unexpected '|' (use '||' or 'or')"},
    {"${a ; b}", COMPILE, CF_EEXPR, "column 5 of '${a ; b}': unexpected character ';'"},
    {"${#}", COMPILE, CF_EEXPR, "column 3 of '${#}': unexpected character '#'"},
    {"${\x01}", COMPILE, CF_EEXPR, "column 3 of '${\x01}': unexpected character \\x01"},
    {"${a.}", COMPILE, CF_EEXPR,
     "column 5 of '${a.}': unexpected end of expression, expected a property name after '.'"},
    {"${a.b.}", COMPILE, CF_EEXPR, "column 7 of '${a.b.}': unexpected end of expression"},
    {"${a.(b)}", COMPILE, CF_EEXPR, "column 5 of '${a.(b)}': unexpected '('"},
    {"${a.1}", COMPILE, CF_EEXPR, "column 4 of '${a.1}': unexpected '.1', expected '}'"},
    {"${[1]}", COMPILE, CF_EEXPR, "column 3 of '${[1]}': unexpected '['"},
    {"${)}", COMPILE, CF_EEXPR, "column 3 of '${)}': unexpected ')'"},
    {"${1 + * 2}", COMPILE, CF_EEXPR, "column 7 of '${1 + * 2}': unexpected '*'"},
    {"${'abc}", COMPILE, CF_EEXPR, "column 3 of '${'abc}': unterminated string"},
    {"${\"abc\\\"}", COMPILE, CF_EEXPR, "column 3 of '${\"abc\\\"}': unterminated string"},
    {"${'a\\nb'}", COMPILE, CF_EEXPR,
     "column 5 of '${'a\\nb'}': invalid escape sequence '\\n' in string"},
    {"${99999999999999999999}", COMPILE, CF_EEXPR,
     "column 3 of '${99999999999999999999}': integer out of range"},
    {"${9223372036854775808}", COMPILE, CF_EEXPR, "integer out of range"},
    {"${1e999}", COMPILE, CF_EEXPR, "column 3 of '${1e999}': number out of range"},
    {"${a instanceof b}", COMPILE, CF_EEXPR,
     "column 5 of '${a instanceof b}': the operator 'instanceof' is not supported"},
    {"ok ${l} then ${l +}", COMPILE, CF_EEXPR,
     "column 19 of 'ok ${l} then ${l +}': unexpected end of expression"},
    {"${f(x)}", COMPILE, CF_EEXPR, "column 4 of '${f(x)}': unexpected '('"},

    /* Unknown variables, in Camunda 7's words. */
    {"${x}", EVAL, CF_ENOENT,
     "Unknown property used in expression: ${x}. Cause: Cannot resolve identifier 'x'"},
    {"${l > 1 && undefined}", EVAL, CF_ENOENT,
     "Unknown property used in expression: ${l > 1 && undefined}. Cause: Cannot resolve "
     "identifier 'undefined'"},
    {"Hi ${who}", EVAL, CF_ENOENT,
     "Unknown property used in expression: Hi ${who}. Cause: Cannot resolve identifier 'who'"},
    {"${broken}", EVAL, CF_EIO, "column 3 of '${broken}': cannot read variable 'broken'"},

    /* Arithmetic. */
    {"${1 / 0}", EVAL, CF_EEXPR, "column 5 of '${1 / 0}': division by zero"},
    {"${1 div 0.0}", EVAL, CF_EEXPR, "column 5 of '${1 div 0.0}': division by zero"},
    {"${1 % 0}", EVAL, CF_EEXPR, "column 5 of '${1 % 0}': division by zero"},
    {"${1 mod 0}", EVAL, CF_EEXPR, "column 5 of '${1 mod 0}': division by zero"},
    {"${1.5 % 0}", EVAL, CF_EEXPR, "column 7 of '${1.5 % 0}': division by zero"},
    {"${nul / nul}", EVAL, CF_EEXPR, "division by zero"},
    {"${big + 1}", EVAL, CF_EEXPR, "column 7 of '${big + 1}': integer overflow in '+'"},
    {"${small - 1}", EVAL, CF_EEXPR, "column 9 of '${small - 1}': integer overflow in '-'"},
    {"${big * 2}", EVAL, CF_EEXPR, "column 7 of '${big * 2}': integer overflow in '*'"},
    {"${-small}", EVAL, CF_EEXPR, "column 3 of '${-small}': integer overflow in '-'"},
    {"${1e308 * 10}", EVAL, CF_EEXPR,
     "column 9 of '${1e308 * 10}': the result of '*' is not a finite number"},
    {"${s + 1}", EVAL, CF_ETYPE,
     "column 5 of '${s + 1}': cannot convert the String 'hello' to a number for '+'"},
    {"${'a' + 'b'}", EVAL, CF_ETYPE, "cannot convert the String 'a' to a number for '+'"},
    {"${' 5' + 1}", EVAL, CF_ETYPE, "cannot convert the String ' 5' to a number"},
    {"${'0x10' + 1}", EVAL, CF_ETYPE, "cannot convert the String '0x10' to a number"},
    {"${'NaN' + 1}", EVAL, CF_ETYPE, "cannot convert the String 'NaN' to a number"},
    {"${t + 1}", EVAL, CF_ETYPE, "column 5 of '${t + 1}': cannot apply '+' to a Boolean"},
    {"${obj + 1}", EVAL, CF_ETYPE, "cannot apply '+' to a JSON object"},
    {"${arr * 1}", EVAL, CF_ETYPE, "cannot apply '*' to a JSON array"},
    {"${date - 1}", EVAL, CF_ETYPE, "cannot apply '-' to a Date"},
    {"${-t}", EVAL, CF_ETYPE, "column 3 of '${-t}': cannot apply '-' to a Boolean"},

    /* Comparisons. */
    {"${s < 1}", EVAL, CF_ETYPE,
     "column 5 of '${s < 1}': cannot convert the String 'hello' to a number for '<'"},
    {"${s == 1}", EVAL, CF_ETYPE, "cannot convert the String 'hello' to a number for '=='"},
    {"${t < 1}", EVAL, CF_ETYPE,
     "column 5 of '${t < 1}': cannot compare a Boolean with a Long using '<'"},
    {"${t == 1}", EVAL, CF_ETYPE, "cannot compare a Boolean with a Long using '=='"},
    {"${s == t}", EVAL, CF_ETYPE, "cannot compare a String with a Boolean using '=='"},
    {"${obj < obj}", EVAL, CF_ETYPE, "cannot compare a JSON object with a JSON object using '<'"},
    {"${obj == 'x'}", EVAL, CF_ETYPE, "cannot compare a JSON object with a String using '=='"},
    {"${date == 1}", EVAL, CF_ETYPE, "cannot compare a Date with a Long using '=='"},
    {"${bytes < bytes}", EVAL, CF_ETYPE, "cannot compare a Bytes value with a Bytes value"},
    {"${s ge date}", EVAL, CF_ETYPE, "cannot compare a String with a Date using '>='"},

    /* Navigation. */
    {"${l.x}", EVAL, CF_ETYPE, "column 5 of '${l.x}': cannot read property 'x' of a Long"},
    {"${nul.y}", EVAL, CF_ETYPE, "column 7 of '${nul.y}': cannot read property 'y' of null"},
    {"${s.length}", EVAL, CF_ETYPE, "cannot read property 'length' of a String"},
    {"${arr.x}", EVAL, CF_ETYPE, "cannot read property 'x' of a JSON array"},
    {"${obj.name.first}", EVAL, CF_ETYPE,
     "column 12 of '${obj.name.first}': cannot read property 'first' of a String"},
    {"${obj.nested.deep.x.y}", EVAL, CF_ETYPE, "cannot read property 'y' of a Long"},
    {"${obj.missing.x}", EVAL, CF_ETYPE, "cannot read property 'x' of null"},
    {"${jstr.x}", EVAL, CF_ETYPE, "cannot read property 'x' of a String"},
    {"${l[0]}", EVAL, CF_ETYPE, "column 4 of '${l[0]}': cannot use [] on a Long"},
    {"${nul[0]}", EVAL, CF_ETYPE, "cannot use [] on null"},
    {"${arr['x']}", EVAL, CF_ETYPE, "an array index must be an integer, not the String 'x'"},
    {"${arr[t]}", EVAL, CF_ETYPE, "an array index must be an integer, not a Boolean"},
    {"${arr[1.5]}", EVAL, CF_ETYPE, "an array index must be an integer, not a Double"},
    {"${arr[nul]}", EVAL, CF_ETYPE, "an array index must be an integer, not null"},
    {"${obj[t]}", EVAL, CF_ETYPE, "a property name must be a String or a Long, not a Boolean"},
    {"${obj[obj]}", EVAL, CF_ETYPE, "not a JSON object"},
    {"${arr[undefined_var]}", EVAL, CF_ENOENT, "Cannot resolve identifier 'undefined_var'"},

    /* Booleans. */
    {"${!l}", EVAL, CF_ETYPE, "column 3 of '${!l}': cannot use a Long as a Boolean in '!'"},
    {"${yes && true}", EVAL, CF_ETYPE,
     "column 7 of '${yes && true}': cannot use the String 'yes' as a Boolean in '&&'"},
    {"${false || obj}", EVAL, CF_ETYPE,
     "column 9 of '${false || obj}': cannot use a JSON object as a Boolean in '||'"},
    {"${l ? 1 : 2}", EVAL, CF_ETYPE,
     "column 5 of '${l ? 1 : 2}': cannot use a Long as a Boolean "
     "in '?:'"},
    {"${true && boom}", EVAL, CF_ENOENT, "Cannot resolve identifier 'boom'"},
};

static void check_err(const struct err_case *c)
{
    char err[512] = "";
    struct cf_expr *e = NULL;
    int rc = cf_expr_compile(c->text, &e, err, sizeof(err));
    if (c->stage == COMPILE) {
        if (rc == 0) {
            cf_expr_free(e);
            fail_msg("'%s' compiled, expected %s", c->text, c->msg);
        }
        assert_null(e);
    } else {
        if (rc != 0)
            fail_msg("'%s' did not compile: %s", c->text, err);
        struct cf_val v = CF_VAL_NULL_INIT;
        cf_val_set_long(&v, 7);
        rc = cf_expr_eval(e, lookup, NULL, &v, err, sizeof(err));
        cf_expr_free(e);
        /* A failed evaluation leaves the caller's value alone. */
        if (rc != 0 && (v.type != CF_VALUE_LONG || v.u.l != 7))
            fail_msg("'%s' changed the output on error", c->text);
        if (rc == 0) {
            cf_val_free(&v);
            fail_msg("'%s' evaluated, expected %s", c->text, c->msg);
        }
    }
    if (rc != c->rc)
        fail_msg("'%s' returned %s, expected %s (%s)", c->text, cf_err_name(rc), cf_err_name(c->rc),
                 err);
    if (!strstr(err, c->msg))
        fail_msg("'%s' said \"%s\", expected \"%s\"", c->text, err, c->msg);
}

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++)
        check_err(&err_cases[i]);
}

static void test_error_buffer_edges(void **state)
{
    (void)state;
    struct cf_expr *e = NULL;
    /* NULL and tiny buffers are allowed; a tiny one is truncated, never overrun. */
    assert_int_equal(cf_expr_compile("${a >", &e, NULL, 0), CF_EEXPR);
    assert_null(e);
    char tiny[12];
    memset(tiny, 'Z', sizeof(tiny));
    assert_int_equal(cf_expr_compile("${a >", &e, tiny, sizeof(tiny)), CF_EEXPR);
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    assert_int_equal(cf_expr_compile(NULL, &e, NULL, 0), CF_EINVAL);
    assert_null(e);

    assert_int_equal(cf_expr_compile("${x}", &e, NULL, 0), 0);
    struct cf_val v = CF_VAL_NULL_INIT;
    assert_int_equal(cf_expr_eval(e, lookup, NULL, &v, NULL, 0), CF_ENOENT);
    /* Without a lookup every identifier is unknown. */
    char err[256];
    assert_int_equal(cf_expr_eval(e, NULL, NULL, &v, err, sizeof(err)), CF_ENOENT);
    assert_non_null(strstr(err, "Cannot resolve identifier 'x'"));
    cf_expr_free(e);
    cf_expr_free(NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation details
 */

static void test_short_circuit_skips_lookups(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int lookups;
    } cases[] = {
        {"${false && boom}", 0}, {"${true || boom}", 0},   {"${t ? 1 : boom}", 0},
        {"${f ? boom : 2}", 0},  {"${f or boom == 1}", 1}, {"${t and boom == 1}", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        struct cf_val v = CF_VAL_NULL_INIT;
        boom_lookups = 0;
        int rc = run(cases[i].text, &v, err, sizeof(err));
        cf_val_free(&v);
        if (boom_lookups != cases[i].lookups)
            fail_msg("'%s' looked up boom %d times", cases[i].text, boom_lookups);
        /* boom is not defined: reading it must fail, not reading it must succeed. */
        assert_int_equal(rc, cases[i].lookups ? CF_ENOENT : 0);
    }
}

static void test_output_is_replaced(void **state)
{
    (void)state;
    struct cf_expr *e = NULL;
    struct cf_val v = CF_VAL_NULL_INIT;
    assert_int_equal(cf_expr_compile("${s}", &e, NULL, 0), 0);
    /* The previous string is released (LeakSanitizer would report it otherwise). */
    cf_val_set_string(&v, "previous");
    assert_int_equal(cf_expr_eval(e, lookup, NULL, &v, NULL, 0), 0);
    assert_int_equal(v.type, CF_VALUE_STRING);
    assert_string_equal(v.u.s, "hello");
    /* Evaluating twice gives the same, and the result is a copy the caller owns. */
    v.u.s[0] = 'J';
    struct cf_val w = CF_VAL_NULL_INIT;
    assert_int_equal(cf_expr_eval(e, lookup, NULL, &w, NULL, 0), 0);
    assert_string_equal(w.u.s, "hello");
    cf_val_free(&v);
    cf_val_free(&w);
    cf_expr_free(e);
}

static void test_eval_bool(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        bool value;
        const char *msg;
    } cases[] = {
        {"${true}", 0, true, NULL},
        {"${l > 1}", 0, true, NULL},
        {"${l < 1}", 0, false, NULL},
        {"${flag_s}", 0, true, NULL},
        {"false", 0, false, NULL},
        {"FaLsE", 0, false, NULL},
        {"true", 0, true, NULL},
        {"${obj.ok}", 0, true, NULL},
        {"${jtrue}", 0, true, NULL},
        {"${l}", CF_ETYPE, false,
         "expression error in '${l}': condition must be a boolean, not a Long"},
        {"${yes}", CF_ETYPE, false, "condition must be a boolean, not the String 'yes'"},
        {"${nul}", CF_ETYPE, false, "condition must be a boolean, not null"},
        {"${obj}", CF_ETYPE, false, "condition must be a boolean, not a JSON object"},
        {"maybe", CF_ETYPE, false, "condition must be a boolean"},
        {"", CF_ETYPE, false, "condition must be a boolean"},
        {"${x}", CF_ENOENT, false, "Cannot resolve identifier 'x'"},
        {"${1/0 == 1}", CF_EEXPR, false, "division by zero"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cf_expr *e = NULL;
        char err[256] = "";
        assert_int_equal(cf_expr_compile(cases[i].text, &e, err, sizeof(err)), 0);
        bool b = !cases[i].value;
        int rc = cf_expr_eval_bool(e, lookup, NULL, &b, err, sizeof(err));
        cf_expr_free(e);
        if (rc != cases[i].rc)
            fail_msg("'%s' returned %s (%s)", cases[i].text, cf_err_name(rc), err);
        if (rc == 0 && b != cases[i].value)
            fail_msg("'%s' gave %d", cases[i].text, b);
        if (rc != 0 && !strstr(err, cases[i].msg))
            fail_msg("'%s' said \"%s\", expected \"%s\"", cases[i].text, err, cases[i].msg);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Compiled-template helpers
 */

static void test_single_identifier_and_dynamic(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *ident;
        bool dynamic;
    } cases[] = {
        {"${taskName}", "taskName", true},
        {"${ taskName }", "taskName", true},
        {"#{t}", "t", true},
        {"${$v}", "$v", true},
        {"${a.b}", NULL, true},
        {"${a[0]}", NULL, true},
        {"x${a}", NULL, true},
        {"${a} ", NULL, true},
        {"${a}${b}", NULL, true},
        {"${a + 1}", NULL, true},
        {"${'a'}", NULL, true},
        {"${true}", NULL, true},
        {"plain", NULL, false},
        {"", NULL, false},
        {"$ {a}", NULL, false},
        {"price $5 or #5 {x}", NULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cf_expr *e = NULL;
        assert_int_equal(cf_expr_compile(cases[i].text, &e, NULL, 0), 0);
        const char *id = cf_expr_single_identifier(e);
        if (cases[i].ident == NULL ? id != NULL : (id == NULL || strcmp(id, cases[i].ident) != 0))
            fail_msg("'%s': single identifier %s", cases[i].text, id ? id : "(null)");
        if (cf_expr_is_dynamic(e) != cases[i].dynamic)
            fail_msg("'%s': dynamic is wrong", cases[i].text);
        assert_string_equal(cf_expr_text(e), cases[i].text);
        cf_expr_free(e);
    }
}

struct ident_list {
    char names[64][32];
    size_t n;
    size_t calls;
};

static void collect(void *arg, const char *name)
{
    struct ident_list *l = arg;
    l->calls++;
    if (l->n < 64)
        snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", name);
}

static void test_foreach_identifier(void **state)
{
    (void)state;
    struct cf_expr *e = NULL;
    struct ident_list l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(
        cf_expr_compile("${a + b.c * a[d]} and ${e ? b : f.g} #{'h' == d}", &e, NULL, 0), 0);
    cf_expr_foreach_identifier(e, collect, &l);
    cf_expr_free(e);
    /* Each top-level variable once, in order of first use; c and g are properties. */
    static const char *want[] = {"a", "b", "d", "e", "f"};
    assert_int_equal(l.calls, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(l.names[i], want[i]);

    memset(&l, 0, sizeof(l));
    assert_int_equal(cf_expr_compile("plain ${1 + 2} ${'x'}", &e, NULL, 0), 0);
    cf_expr_foreach_identifier(e, collect, &l);
    cf_expr_free(e);
    assert_int_equal(l.calls, 0);

    /* Thousands of uses of one name give one call; thousands of names give one call each. */
    char *same = repeat("${a", "+a", 5000, "", "", 0, "}");
    memset(&l, 0, sizeof(l));
    assert_int_equal(cf_expr_compile(same, &e, NULL, 0), 0);
    cf_expr_foreach_identifier(e, collect, &l);
    cf_expr_free(e);
    free(same);
    assert_int_equal(l.calls, 1);

    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_puts(&b, "${v0");
    for (int i = 1; i < 3000; i++)
        cf_buf_printf(&b, "+v%d", i);
    cf_buf_puts(&b, "+v0}");
    memset(&l, 0, sizeof(l));
    assert_int_equal(cf_expr_compile(b.data, &e, NULL, 0), 0);
    cf_expr_foreach_identifier(e, collect, &l);
    cf_expr_free(e);
    cf_buf_free(&b);
    assert_int_equal(l.calls, 3000);
    assert_string_equal(l.names[0], "v0");
    assert_string_equal(l.names[63], "v63");
}

/* ---------------------------------------------------------------------------------------------
 * Limits
 */

static void expect_too_deep(char *text)
{
    char err[256] = "";
    struct cf_expr *e = NULL;
    int rc = cf_expr_compile(text, &e, err, sizeof(err));
    size_t len = strlen(text);
    free(text);
    cf_expr_free(e);
    if (rc != CF_ELIMIT || e != NULL || !strstr(err, "nested too deeply"))
        fail_msg("deep input of %zu bytes gave %s: %s", len, cf_err_name(rc), err);
}

static void test_deep_nesting_rejected(void **state)
{
    (void)state;
    const size_t n = 10000;
    expect_too_deep(repeat("${", "(", n, "1", ")", n, "}"));
    expect_too_deep(repeat("${", "(", n, "", "", 0, ""));
    expect_too_deep(repeat("${", "!", n, "true", "", 0, "}"));
    expect_too_deep(repeat("${", "not ", n, "true", "", 0, "}"));
    expect_too_deep(repeat("${", "-", n, "1", "", 0, "}"));
    expect_too_deep(repeat("${", "empty ", n, "x", "", 0, "}"));
    expect_too_deep(repeat("${a", ".b", n, "", "", 0, "}"));
    expect_too_deep(repeat("${a", "[0]", n, "", "", 0, "}"));
    expect_too_deep(repeat("${", "a[", n, "0", "]", n, "}"));
    /* These pieces are longer: 10000 of them would hit the length limit first. */
    expect_too_deep(repeat("${", "x ? ", n / 2, "1", " : 2", n / 2, "}"));
    expect_too_deep(repeat("${", "t ? 1 : ", n / 2, "2", "", 0, "}"));
    expect_too_deep(repeat("${", "1 + (", n, "1", ")", n, "}"));
    expect_too_deep(repeat("${", "a[(", n, "0", ")]", n, "}"));
}

static void test_depth_boundary(void **state)
{
    (void)state;
    const size_t max = CF_EXPR_MAX_DEPTH - 1; /* nested levels below the top one */
    char err[256];
    struct cf_val v = CF_VAL_NULL_INIT;

    char *text = repeat("${", "(", max, "1", ")", max, "}");
    assert_int_equal(run(text, &v, err, sizeof(err)), 0);
    assert_int_equal(v.u.l, 1);
    free(text);
    expect_too_deep(repeat("${", "(", max + 1, "1", ")", max + 1, "}"));

    text = repeat("${", "!", max, "true", "", 0, "}");
    assert_int_equal(run(text, &v, err, sizeof(err)), 0);
    assert_int_equal(v.type, CF_VALUE_BOOLEAN);
    assert_false(v.u.b); /* 63 negations of true */
    free(text);
    expect_too_deep(repeat("${", "!", max + 1, "true", "", 0, "}"));

    /* The deepest accepted path also evaluates: the evaluator's own cap agrees. */
    text = repeat("${deep", ".b", DEEP_LEVELS, "", "", 0, "}");
    assert_int_equal(run(text, &v, err, sizeof(err)), 0);
    assert_int_equal(v.type, CF_VALUE_LONG);
    assert_int_equal(v.u.l, 1);
    free(text);
    expect_too_deep(repeat("${deep", ".b", DEEP_LEVELS + 1, "", "", 0, "}"));

    /* Long flat expressions are not deep. */
    text = repeat("${t", " && t", 5000, "", "", 0, "}");
    assert_int_equal(run(text, &v, err, sizeof(err)), 0);
    assert_true(v.u.b);
    free(text);
    cf_val_free(&v);
}

static void test_length_limit(void **state)
{
    (void)state;
    char err[256] = "";
    struct cf_expr *e = NULL;
    struct cf_val v = CF_VAL_NULL_INIT;

    /* Exactly CF_EXPR_MAX_LEN bytes: "${1" + "+1" * k + "}" has 4 + 2k bytes. */
    size_t k = (CF_EXPR_MAX_LEN - 4) / 2;
    char *text = repeat("${1", "+1", k, "", "", 0, "}");
    assert_int_equal(strlen(text), CF_EXPR_MAX_LEN);
    assert_int_equal(run(text, &v, err, sizeof(err)), 0);
    assert_int_equal(v.type, CF_VALUE_LONG);
    assert_int_equal(v.u.l, (int64_t)k + 1);
    free(text);

    text = repeat("", "a", CF_EXPR_MAX_LEN + 1, "", "", 0, "");
    assert_int_equal(cf_expr_compile(text, &e, err, sizeof(err)), CF_ELIMIT);
    assert_null(e);
    assert_non_null(strstr(err, "longer than the limit of 65536 bytes"));
    free(text);

    text = repeat("${'", "x", 4 * 1024 * 1024, "'", "", 0, "}");
    assert_int_equal(cf_expr_compile(text, &e, err, sizeof(err)), CF_ELIMIT);
    free(text);

    /* A long string literal within the limit is fine. */
    text = repeat("${'", "x", 60000, "'", "", 0, "}");
    assert_int_equal(run(text, &v, err, sizeof(err)), 0);
    assert_int_equal(strlen(v.u.s), 60000);
    free(text);

    /* Templates that would concatenate more than 16 MiB are refused. */
    text = repeat("", "${mb}", 17, "", "", 0, "");
    assert_int_equal(run(text, &v, err, sizeof(err)), CF_ELIMIT);
    assert_non_null(strstr(err, "longer than the limit"));
    free(text);
    text = repeat("", "${mb}", 3, "", "", 0, "");
    assert_int_equal(run(text, &v, err, sizeof(err)), 0);
    assert_int_equal(strlen(v.u.s), 3 * 1024 * 1024);
    free(text);
    cf_val_free(&v);
}

/* ---------------------------------------------------------------------------------------------
 * Random input
 */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void ignore_ident(void *arg, const char *name)
{
    size_t *count = arg;
    assert_non_null(name);
    assert_true(name[0] != '\0');
    (*count)++;
}

/* Compiles and evaluates one input; checks the promises that hold for any input. */
static void try_input(const char *text, size_t *compiled, size_t *evaluated)
{
    char err[512];
    struct cf_expr *e = NULL;
    err[0] = '\0';
    int rc = cf_expr_compile(text, &e, err, sizeof(err));
    if (rc != 0) {
        if (rc >= 0 || e != NULL || strncmp(err, "expression error at column ", 27) != 0)
            fail_msg("compile of random input gave %d: '%s'", rc, err);
        return;
    }
    (*compiled)++;
    size_t idents = 0;
    cf_expr_foreach_identifier(e, ignore_ident, &idents);
    (void)cf_expr_single_identifier(e);
    assert_string_equal(cf_expr_text(e), text);
    struct cf_val v = CF_VAL_NULL_INIT;
    err[0] = '\0';
    rc = cf_expr_eval(e, lookup, NULL, &v, err, sizeof(err));
    if (rc == 0) {
        (*evaluated)++;
        assert_true(v.type <= CF_VALUE_DATE);
        cf_val_free(&v);
    } else if (rc > 0 || (strncmp(err, "expression error at column ", 27) != 0 &&
                          strncmp(err, "Unknown property used in expression: ", 37) != 0)) {
        fail_msg("eval of '%s' gave %d: '%s'", text, rc, err);
    }
    bool b;
    rc = cf_expr_eval_bool(e, lookup, NULL, &b, err, sizeof(err));
    assert_true(rc <= 0);
    cf_expr_free(e);
}

static void test_random_inputs(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "${",    "}",     "#{",  "(",  ")",     "[",   "]",   ".",     "l",    "obj",
        "arr",   "s",     "nul", "d",  "tags",  "0",   "1",   "2.5",   "'x'",  "\"y\"",
        "+",     "-",     "*",   "/",  "%",     "==",  "!=",  "<",     ">=",   "&&",
        "||",    "!",     "?",   ":",  "empty", "not", "and", "div",   "mod",  "true",
        "null",  " ",     "\\",  "'",  "$",     "e",   "9e9", "big",   "name", "count",
        "small", "undef", "t",   "f",  "jstr",  "=",   "&",   "date",  "mb",   "deep",
        "b",     "1e",    ".5",  "gt", "eq",    "or",  "\"",  "bytes", "yes",  "obj.tags",
    };
    char buf[512];
    size_t compiled = 0, evaluated = 0;
    rng_state = 0x9E3779B97F4A7C15ULL;
    for (int iter = 0; iter < 4000; iter++) {
        size_t len = 0;
        if (iter % 2 == 0) {
            /* Arbitrary bytes (no NUL, which ends a C string), often behind "${". */
            size_t n = 1 + rng() % 200;
            if (rng() % 2) {
                memcpy(buf, "${", 2);
                len = 2;
            }
            for (size_t i = 0; i < n; i++)
                buf[len++] = (char)(1 + rng() % 255);
        } else {
            /* Expression-shaped text from the pieces above. */
            size_t n = 1 + rng() % 30;
            memcpy(buf, "${", 2);
            len = 2;
            for (size_t i = 0; i < n; i++) {
                const char *p = pieces[rng() % (sizeof(pieces) / sizeof(pieces[0]))];
                size_t pl = strlen(p);
                if (len + pl + 2 >= sizeof(buf))
                    break;
                memcpy(buf + len, p, pl);
                len += pl;
            }
            if (rng() % 4)
                buf[len++] = '}';
        }
        buf[len] = '\0';
        try_input(buf, &compiled, &evaluated);
    }
    /* The loop must reach the evaluator, not only the parser's error paths. */
    if (compiled < 100 || evaluated < 20)
        fail_msg("random inputs compiled %zu times, evaluated %zu times", compiled, evaluated);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_results),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_error_buffer_edges),
        cmocka_unit_test(test_short_circuit_skips_lookups),
        cmocka_unit_test(test_output_is_replaced),
        cmocka_unit_test(test_eval_bool),
        cmocka_unit_test(test_single_identifier_and_dynamic),
        cmocka_unit_test(test_foreach_identifier),
        cmocka_unit_test(test_deep_nesting_rejected),
        cmocka_unit_test(test_depth_boundary),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_random_inputs),
    };
    return cmocka_run_group_tests(tests, setup_vars, teardown_vars);
}
