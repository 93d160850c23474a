/*
 * The ${...} expression evaluator, a JUEL subset (expr.h holds the grammar and the semantics).
 * cf_expr_compile() splits a template into literal text and expressions and parses each expression
 * into a tree once; cf_expr_eval() walks the trees as often as the caller likes, resolving
 * top-level identifiers through the caller's lookup function. Where variables live, what their
 * types are and what the result is used for are left to the callers (bpmn/ and run/).
 *
 * The text comes from process designers and, through deployments, from the network, so no input
 * may crash it. Every node of a compiled template sits in one arena (`nodes`), so a parse error at
 * any point frees everything with one loop. Parser recursion and tree height are both capped at
 * CF_EXPR_MAX_DEPTH, which bounds the evaluator's recursion too. A run of operators of one
 * precedence level (a + b + c, x || y || z) is one node with a list of operands, so long flat
 * expressions are not deep ones; a path (a.b[0].c) is deep, one level per step.
 *
 * Return codes: CF_EEXPR for syntax errors, division by zero and overflow; CF_ELIMIT for text
 * that is too long or nested too deeply; CF_ETYPE for operands of the wrong type; CF_ENOENT for an
 * unknown variable (with Camunda 7's wording); the lookup's own code when it fails otherwise.
 * cf_expr_eval() stores into an initialised `*out`, releasing what it held, as the cf_val_set_*
 * functions do, and leaves it untouched on error.
 */
#include "expr/expr.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "${big}${big}..." must not be able to ask for gigabytes: concatenated results are capped. */
#define MAX_RESULT_LEN (16u * 1024u * 1024u)

/* Error messages quote at most this many bytes of a token or string value. */
#define QUOTE_MAX 40

enum tok_kind {
    T_END, /* the end of the whole text: the expression was not closed */
    T_RBRACE,
    T_IDENT,
    T_INT,
    T_FLOAT,
    T_STRING,
    T_TRUE,
    T_FALSE,
    T_NULL,
    T_OR,
    T_AND,
    T_NOT,
    T_EQ,
    T_NE,
    T_LT,
    T_GT,
    T_LE,
    T_GE,
    T_EMPTY,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
    T_PERCENT,
    T_QUESTION,
    T_COLON,
    T_LPAREN,
    T_RPAREN,
    T_LBRACKET,
    T_RBRACKET,
    T_DOT
};

struct token {
    enum tok_kind kind;
    size_t off; /* byte offset in the template text */
    size_t len;
    bool word;         /* spelled like an identifier: identifiers and reserved words */
    struct cf_val val; /* value of T_INT, T_FLOAT and T_STRING; owned by the parser */
};

enum op {
    OP_OR,
    OP_AND,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_GT,
    OP_LE,
    OP_GE,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_MOD,
    OP_NOT,
    OP_NEG,
    OP_EMPTY
};

static const char *const op_names[] = {
    "||", "&&", "==", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "!", "-", "empty"};

enum node_kind { N_LIT, N_IDENT, N_MEMBER, N_INDEX, N_UNARY, N_COND, N_CHAIN };

struct chain_op {
    enum op op;
    size_t off;
};

struct node {
    enum node_kind kind;
    enum op op;        /* N_UNARY */
    size_t off;        /* where errors about this node point */
    int height;        /* 1 for a leaf, else 1 + the tallest child */
    struct cf_val lit; /* N_LIT */
    char *name;        /* N_IDENT, N_MEMBER */
    struct node *a;    /* N_MEMBER and N_INDEX base, N_UNARY operand, N_COND condition */
    struct node *b;    /* N_INDEX index, N_COND "then" */
    struct node *c;    /* N_COND "else" */
    /* N_CHAIN: items[0] ops[0] items[1] ops[1] ... items[nitems - 1]. */
    struct node **items;
    struct chain_op *ops;
    size_t nitems, cap;
};

/* A template part: an expression, or (root == NULL) the literal text [off, off + len). */
struct part {
    struct node *root;
    size_t off, len;
};

struct cf_expr {
    char *text;
    size_t len;
    struct part *parts;
    size_t nparts, capparts;
    struct node **nodes; /* every node of every part: the arena that cf_expr_free() empties */
    size_t nnodes, capnodes;
    const char **idents; /* distinct top-level identifiers in order of appearance (borrowed) */
    size_t nidents;
};

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* Messages quote the template, but only its start: a 64 KiB template would otherwise push the
 * reason for the error out of any reasonable error buffer. The column still points past it. */
#define TEXT_QUOTE_MAX 100

static int text_quote_len(const char *text)
{
    size_t len = strnlen(text, TEXT_QUOTE_MAX + 1);
    return (int)(len > TEXT_QUOTE_MAX ? TEXT_QUOTE_MAX : len);
}

static const char *text_ellipsis(const char *text)
{
    return strnlen(text, TEXT_QUOTE_MAX + 1) > TEXT_QUOTE_MAX ? "..." : "";
}

static void verror(char *err, size_t errlen, const char *text, size_t off, const char *fmt,
                   va_list ap)
{
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    cf_errf(err, errlen, "expression error at column %zu of '%.*s%s': %s", off + 1,
            text_quote_len(text), text, text_ellipsis(text), msg);
}

/* ---------------------------------------------------------------------------------------------
 * Scanner and parser
 */

struct parser {
    struct cf_expr *e;
    const char *s; /* e->text, NUL-terminated */
    size_t pos;    /* where the next token starts (before white space) */
    struct token tok;
    int depth;
    int rc; /* the first error, or 0 */
    char *err;
    size_t errlen;
};

static void *perr(struct parser *p, int rc, size_t off, const char *fmt, ...) CF_PRINTF(4, 5);

static void *perr(struct parser *p, int rc, size_t off, const char *fmt, ...)
{
    /* Only the first error is reported: later ones are consequences of it. */
    if (p->rc == 0) {
        va_list ap;
        va_start(ap, fmt);
        verror(p->err, p->errlen, p->s, off, fmt, ap);
        va_end(ap);
        p->rc = rc;
    }
    return NULL;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* JUEL identifiers are Java identifiers; bytes of non-ASCII UTF-8 count as letters so that names
 * such as "größe" work, as they do in Camunda. */
static bool is_ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c >= 0x80;
}

static bool is_ident_part(unsigned char c)
{
    return is_ident_start(c) || is_digit(c);
}

static const struct {
    const char *word;
    enum tok_kind kind;
} keywords[] = {
    {"true", T_TRUE}, {"false", T_FALSE}, {"null", T_NULL},   {"and", T_AND},   {"or", T_OR},
    {"not", T_NOT},   {"eq", T_EQ},       {"ne", T_NE},       {"lt", T_LT},     {"gt", T_GT},
    {"le", T_LE},     {"ge", T_GE},       {"empty", T_EMPTY}, {"div", T_SLASH}, {"mod", T_PERCENT},
};

static int scan_word(struct parser *p, size_t i)
{
    size_t j = i;
    while (is_ident_part((unsigned char)p->s[j]))
        j++;
    size_t n = j - i;
    struct token *t = &p->tok;
    t->kind = T_IDENT;
    t->word = true;
    for (size_t k = 0; k < CF_ARRAY_LEN(keywords); k++) {
        if (strlen(keywords[k].word) == n && memcmp(keywords[k].word, p->s + i, n) == 0) {
            t->kind = keywords[k].kind;
            break;
        }
    }
    if (n == 10 && memcmp(p->s + i, "instanceof", 10) == 0) {
        perr(p, CF_EEXPR, i, "the operator 'instanceof' is not supported");
        return p->rc;
    }
    t->len = n;
    p->pos = j;
    return 0;
}

/* JUEL's literals: integers are unsigned digit strings (a sign is the unary operator), decimals
 * are digits '.' digits*, '.' digits or digits with an exponent. */
static int scan_number(struct parser *p, size_t i)
{
    const char *s = p->s;
    size_t j = i;
    bool is_float = false;
    while (is_digit((unsigned char)s[j]))
        j++;
    if (s[j] == '.') {
        is_float = true;
        j++;
        while (is_digit((unsigned char)s[j]))
            j++;
    }
    if ((s[j] == 'e' || s[j] == 'E') &&
        (is_digit((unsigned char)s[j + 1]) ||
         ((s[j + 1] == '+' || s[j + 1] == '-') && is_digit((unsigned char)s[j + 2])))) {
        is_float = true;
        j += 2;
        while (is_digit((unsigned char)s[j]))
            j++;
    }
    struct token *t = &p->tok;
    t->len = j - i;
    if (is_float) {
        char *copy = cf_xstrndup(s + i, j - i);
        double d = strtod(copy, NULL);
        free(copy);
        if (!isfinite(d)) {
            perr(p, CF_EEXPR, i, "number out of range: '%.*s'",
                 (int)(t->len > QUOTE_MAX ? QUOTE_MAX : t->len), s + i);
            return p->rc;
        }
        t->kind = T_FLOAT;
        cf_val_set_double(&t->val, d);
    } else {
        int64_t v = 0;
        for (size_t k = i; k < j; k++) {
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[k] - '0', &v)) {
                perr(p, CF_EEXPR, i, "integer out of range: '%.*s'",
                     (int)(t->len > QUOTE_MAX ? QUOTE_MAX : t->len), s + i);
                return p->rc;
            }
        }
        t->kind = T_INT;
        cf_val_set_long(&t->val, v);
    }
    p->pos = j;
    return 0;
}

/* As in JUEL, a backslash may only escape a backslash or a quote; either quote may be escaped in
 * either kind of string. */
static int scan_string(struct parser *p, size_t i)
{
    const char *s = p->s;
    char quote = s[i];
    size_t j = i + 1;
    struct cf_buf b;
    cf_buf_init(&b);
    for (;;) {
        size_t run = j;
        while (s[j] && s[j] != quote && s[j] != '\\')
            j++;
        cf_buf_append(&b, s + run, j - run);
        if (s[j] == quote)
            break;
        if (s[j] == '\0' || s[j + 1] == '\0') {
            cf_buf_free(&b);
            perr(p, CF_EEXPR, i, "unterminated string");
            return p->rc;
        }
        char c = s[j + 1];
        if (c != '\\' && c != '\'' && c != '"') {
            cf_buf_free(&b);
            if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                perr(p, CF_EEXPR, j, "invalid escape sequence '\\x%02x' in string",
                     (unsigned char)c);
            else
                perr(p, CF_EEXPR, j,
                     "invalid escape sequence '\\%c' in string (only \\\\, \\' and \\\" are "
                     "allowed)",
                     c);
            return p->rc;
        }
        cf_buf_putc(&b, c);
        j += 2;
    }
    struct token *t = &p->tok;
    t->kind = T_STRING;
    t->len = j + 1 - i;
    cf_val_take_string(&t->val, cf_buf_steal(&b));
    p->pos = j + 1;
    return 0;
}

/* Reads the next token into p->tok, releasing the value of the previous one. */
static int scan(struct parser *p)
{
    const char *s = p->s;
    size_t i = p->pos;
    struct token *t = &p->tok;
    cf_val_free(&t->val);
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f')
        i++;
    t->off = i;
    t->word = false;
    unsigned char c = (unsigned char)s[i];
    unsigned char c2 = c ? (unsigned char)s[i + 1] : 0;
    size_t n = 1;
    switch (c) {
    case '\0':
        t->kind = T_END;
        n = 0;
        break;
    case '}':
        t->kind = T_RBRACE;
        break;
    case '(':
        t->kind = T_LPAREN;
        break;
    case ')':
        t->kind = T_RPAREN;
        break;
    case '[':
        t->kind = T_LBRACKET;
        break;
    case ']':
        t->kind = T_RBRACKET;
        break;
    case '?':
        t->kind = T_QUESTION;
        break;
    case ':':
        t->kind = T_COLON;
        break;
    case '+':
        t->kind = T_PLUS;
        break;
    case '-':
        t->kind = T_MINUS;
        break;
    case '*':
        t->kind = T_STAR;
        break;
    case '/':
        t->kind = T_SLASH;
        break;
    case '%':
        t->kind = T_PERCENT;
        break;
    case '&':
        if (c2 != '&') {
            perr(p, CF_EEXPR, i, "unexpected '&' (use '&&' or 'and')");
            return p->rc;
        }
        t->kind = T_AND;
        n = 2;
        break;
    case '|':
        if (c2 != '|') {
            perr(p, CF_EEXPR, i, "unexpected '|' (use '||' or 'or')");
            return p->rc;
        }
        t->kind = T_OR;
        n = 2;
        break;
    case '=':
        if (c2 != '=') {
            perr(p, CF_EEXPR, i, "unexpected '=' (use '==' or 'eq' to compare)");
            return p->rc;
        }
        t->kind = T_EQ;
        n = 2;
        break;
    case '!':
        t->kind = c2 == '=' ? T_NE : T_NOT;
        n = c2 == '=' ? 2 : 1;
        break;
    case '<':
        t->kind = c2 == '=' ? T_LE : T_LT;
        n = c2 == '=' ? 2 : 1;
        break;
    case '>':
        t->kind = c2 == '=' ? T_GE : T_GT;
        n = c2 == '=' ? 2 : 1;
        break;
    case '\'':
    case '"':
        return scan_string(p, i);
    case '.':
        if (is_digit(c2))
            return scan_number(p, i);
        t->kind = T_DOT;
        break;
    default:
        if (is_digit(c))
            return scan_number(p, i);
        if (is_ident_start(c))
            return scan_word(p, i);
        if (c < 0x20 || c == 0x7f)
            perr(p, CF_EEXPR, i, "unexpected character \\x%02x", c);
        else
            perr(p, CF_EEXPR, i, "unexpected character '%c'", c);
        return p->rc;
    }
    t->len = n;
    p->pos = i + n;
    return 0;
}

/* Reports the current token as out of place; `expected` may be NULL. */
static void *unexpected(struct parser *p, const char *expected)
{
    const struct token *t = &p->tok;
    const char *sep = expected ? ", expected " : "";
    if (!expected)
        expected = "";
    if (t->kind == T_RBRACE)
        return perr(p, CF_EEXPR, t->off, "unexpected end of expression%s%s", sep, expected);
    if (t->kind == T_END)
        return perr(p, CF_EEXPR, t->off,
                    "unexpected end of text: the expression has no closing '}'");
    int len = (int)(t->len > QUOTE_MAX ? QUOTE_MAX : t->len);
    return perr(p, CF_EEXPR, t->off, "unexpected '%.*s'%s%s%s", len, p->s + t->off,
                t->len > QUOTE_MAX ? "..." : "", sep, expected);
}

static struct node *new_node(struct parser *p, enum node_kind kind, size_t off)
{
    struct cf_expr *e = p->e;
    if (e->nnodes == e->capnodes) {
        e->capnodes = e->capnodes ? 2 * e->capnodes : 16;
        e->nodes = cf_xrealloc(e->nodes, e->capnodes * sizeof(*e->nodes));
    }
    struct node *n = cf_xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->off = off;
    n->height = 1;
    n->lit.type = CF_VALUE_NULL;
    e->nodes[e->nnodes++] = n;
    return n;
}

static void grow_height(struct node *n, const struct node *child)
{
    if (child->height + 1 > n->height)
        n->height = child->height + 1;
}

/* The evaluator recurses once per level of the tree, so the tree's height is what must be
 * capped; parenthesised subexpressions add no node and are capped by enter() instead. */
static struct node *check_height(struct parser *p, struct node *n)
{
    if (n->height > CF_EXPR_MAX_DEPTH)
        return perr(p, CF_ELIMIT, n->off, "expression nested too deeply (more than %d levels)",
                    CF_EXPR_MAX_DEPTH);
    return n;
}

static bool enter(struct parser *p)
{
    if (++p->depth > CF_EXPR_MAX_DEPTH) {
        perr(p, CF_ELIMIT, p->tok.off, "expression nested too deeply (more than %d levels)",
             CF_EXPR_MAX_DEPTH);
        return false;
    }
    return true;
}

static struct node *parse_cond(struct parser *p);

static struct node *parse_primary(struct parser *p)
{
    struct token *t = &p->tok;
    struct node *n;
    switch (t->kind) {
    case T_INT:
    case T_FLOAT:
    case T_STRING:
        n = new_node(p, N_LIT, t->off);
        cf_val_move(&n->lit, &t->val);
        break;
    case T_TRUE:
    case T_FALSE:
        n = new_node(p, N_LIT, t->off);
        cf_val_set_bool(&n->lit, t->kind == T_TRUE);
        break;
    case T_NULL:
        n = new_node(p, N_LIT, t->off);
        break;
    case T_IDENT:
        n = new_node(p, N_IDENT, t->off);
        n->name = cf_xstrndup(p->s + t->off, t->len);
        break;
    case T_LPAREN:
        if (scan(p) != 0)
            return NULL;
        n = parse_cond(p);
        if (!n)
            return NULL;
        if (t->kind != T_RPAREN)
            return unexpected(p, "')'");
        break;
    default:
        return unexpected(p, NULL);
    }
    return scan(p) == 0 ? n : NULL;
}

static struct node *parse_path(struct parser *p)
{
    struct node *n = parse_primary(p);
    struct token *t = &p->tok;
    while (n) {
        struct node *step;
        if (t->kind == T_DOT) {
            if (scan(p) != 0)
                return NULL;
            /* After a dot a reserved word can only be a property name, so a.empty is allowed. */
            if (!t->word)
                return unexpected(p, "a property name after '.'");
            step = new_node(p, N_MEMBER, t->off);
            step->name = cf_xstrndup(p->s + t->off, t->len);
            step->a = n;
            grow_height(step, n);
        } else if (t->kind == T_LBRACKET) {
            step = new_node(p, N_INDEX, t->off);
            step->a = n;
            grow_height(step, n);
            if (scan(p) != 0 || !(step->b = parse_cond(p)))
                return NULL;
            if (t->kind != T_RBRACKET)
                return unexpected(p, "']'");
            grow_height(step, step->b);
        } else {
            return n;
        }
        if (!check_height(p, step) || scan(p) != 0)
            return NULL;
        n = step;
    }
    return NULL;
}

static struct node *parse_unary(struct parser *p)
{
    enum op op;
    switch (p->tok.kind) {
    case T_NOT:
        op = OP_NOT;
        break;
    case T_MINUS:
        op = OP_NEG;
        break;
    case T_EMPTY:
        op = OP_EMPTY;
        break;
    default:
        return parse_path(p);
    }
    size_t off = p->tok.off;
    struct node *n = NULL;
    if (enter(p) && scan(p) == 0) {
        struct node *a = parse_unary(p);
        if (a) {
            n = new_node(p, N_UNARY, off);
            n->op = op;
            n->a = a;
            grow_height(n, a);
            n = check_height(p, n);
        }
    }
    p->depth--;
    return n;
}

enum level { LVL_OR, LVL_AND, LVL_EQ, LVL_REL, LVL_ADD, LVL_MUL, LVL_UNARY };

static bool level_op(enum level lvl, enum tok_kind k, enum op *op)
{
    static const struct {
        enum level lvl;
        enum tok_kind kind;
        enum op op;
    } map[] = {
        {LVL_OR, T_OR, OP_OR},        {LVL_AND, T_AND, OP_AND},  {LVL_EQ, T_EQ, OP_EQ},
        {LVL_EQ, T_NE, OP_NE},        {LVL_REL, T_LT, OP_LT},    {LVL_REL, T_GT, OP_GT},
        {LVL_REL, T_LE, OP_LE},       {LVL_REL, T_GE, OP_GE},    {LVL_ADD, T_PLUS, OP_ADD},
        {LVL_ADD, T_MINUS, OP_SUB},   {LVL_MUL, T_STAR, OP_MUL}, {LVL_MUL, T_SLASH, OP_DIV},
        {LVL_MUL, T_PERCENT, OP_MOD},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(map); i++) {
        if (map[i].lvl == lvl && map[i].kind == k) {
            *op = map[i].op;
            return true;
        }
    }
    return false;
}

static void chain_push(struct node *chain, struct node *item, enum op op, size_t off)
{
    if (chain->nitems == chain->cap) {
        chain->cap = chain->cap ? 2 * chain->cap : 4;
        chain->items = cf_xrealloc(chain->items, chain->cap * sizeof(*chain->items));
        chain->ops = cf_xrealloc(chain->ops, chain->cap * sizeof(*chain->ops));
    }
    if (chain->nitems > 0) {
        chain->ops[chain->nitems - 1].op = op;
        chain->ops[chain->nitems - 1].off = off;
    }
    chain->items[chain->nitems++] = item;
    grow_height(chain, item);
}

/* One binary precedence level: operand (op operand)*, left-associative. */
static struct node *parse_level(struct parser *p, enum level lvl)
{
    if (lvl == LVL_UNARY)
        return parse_unary(p);
    struct node *first = parse_level(p, lvl + 1);
    enum op op;
    if (!first || !level_op(lvl, p->tok.kind, &op))
        return first;
    struct node *chain = new_node(p, N_CHAIN, p->tok.off);
    chain_push(chain, first, op, 0);
    while (level_op(lvl, p->tok.kind, &op)) {
        size_t off = p->tok.off;
        if (scan(p) != 0)
            return NULL;
        struct node *next = parse_level(p, lvl + 1);
        if (!next)
            return NULL;
        chain_push(chain, next, op, off);
    }
    return check_height(p, chain);
}

static struct node *parse_cond(struct parser *p)
{
    struct token *t = &p->tok;
    struct node *n = NULL;
    if (!enter(p))
        goto out;
    n = parse_level(p, LVL_OR);
    if (n && t->kind == T_QUESTION) {
        struct node *c = new_node(p, N_COND, t->off);
        c->a = n;
        n = NULL;
        if (scan(p) != 0 || !(c->b = parse_cond(p)))
            goto out;
        if (t->kind != T_COLON) {
            unexpected(p, "':'");
            goto out;
        }
        if (scan(p) != 0 || !(c->c = parse_cond(p)))
            goto out;
        grow_height(c, c->a);
        grow_height(c, c->b);
        grow_height(c, c->c);
        n = check_height(p, c);
    }
out:
    p->depth--;
    return n;
}

/* Parses the expression that starts at p->pos (just after "${") up to its closing brace. */
static struct node *parse_embedded(struct parser *p)
{
    p->depth = 0;
    if (scan(p) != 0)
        return NULL;
    struct node *n = parse_cond(p);
    if (!n)
        return NULL;
    if (p->tok.kind != T_RBRACE)
        return unexpected(p, "'}'");
    return n;
}

static void add_part(struct cf_expr *e, struct node *root, size_t off, size_t len)
{
    if (!root && len == 0)
        return;
    if (e->nparts == e->capparts) {
        e->capparts = e->capparts ? 2 * e->capparts : 4;
        e->parts = cf_xrealloc(e->parts, e->capparts * sizeof(*e->parts));
    }
    e->parts[e->nparts].root = root;
    e->parts[e->nparts].off = off;
    e->parts[e->nparts].len = len;
    e->nparts++;
}

struct ident_ref {
    const char *name;
    size_t idx;
};

static int ident_ref_cmp(const void *a, const void *b)
{
    const struct ident_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Lists each top-level identifier once, in order of first appearance. Sorting keeps this
 * O(n log n): a 64 KiB template can hold tens of thousands of identifiers. */
static void collect_idents(struct cf_expr *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nnodes; i++)
        n += e->nodes[i]->kind == N_IDENT;
    if (n == 0)
        return;
    const char **names = cf_xmalloc(n * sizeof(*names));
    struct ident_ref *refs = cf_xmalloc(n * sizeof(*refs));
    bool *keep = cf_xcalloc(n, sizeof(*keep));
    n = 0;
    for (size_t i = 0; i < e->nnodes; i++) {
        if (e->nodes[i]->kind == N_IDENT) {
            names[n] = e->nodes[i]->name;
            refs[n].name = names[n];
            refs[n].idx = n;
            n++;
        }
    }
    qsort(refs, n, sizeof(*refs), ident_ref_cmp);
    for (size_t k = 0; k < n; k++)
        keep[refs[k].idx] = k == 0 || strcmp(refs[k].name, refs[k - 1].name) != 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (keep[i])
            names[m++] = names[i];
    }
    e->idents = names;
    e->nidents = m;
    free(refs);
    free(keep);
}

int cf_expr_compile(const char *text, struct cf_expr **out, char *err, size_t errlen)
{
    if (!out) {
        cf_errf(err, errlen, "cf_expr_compile: no place for the result");
        return CF_EINVAL;
    }
    *out = NULL;
    if (!text) {
        cf_errf(err, errlen, "no expression text");
        return CF_EINVAL;
    }
    size_t len = strnlen(text, (size_t)CF_EXPR_MAX_LEN + 1);
    if (len > CF_EXPR_MAX_LEN) {
        cf_errf(err, errlen, "expression text is longer than the limit of %d bytes",
                CF_EXPR_MAX_LEN);
        return CF_ELIMIT;
    }
    struct cf_expr *e = cf_xcalloc(1, sizeof(*e));
    e->text = cf_xstrndup(text, len);
    e->len = len;
    struct parser p;
    memset(&p, 0, sizeof(p));
    p.e = e;
    p.s = e->text;
    p.tok.val.type = CF_VALUE_NULL;
    p.err = err;
    p.errlen = errlen;
    const char *s = e->text;
    size_t i = 0, lit = 0;
    while (i < len) {
        if ((s[i] == '$' || s[i] == '#') && s[i + 1] == '{') {
            add_part(e, NULL, lit, i - lit);
            p.pos = i + 2;
            struct node *root = parse_embedded(&p);
            if (!root) {
                int rc = p.rc ? p.rc : CF_EEXPR;
                cf_val_free(&p.tok.val);
                cf_expr_free(e);
                return rc;
            }
            add_part(e, root, i, p.pos - i);
            i = lit = p.pos;
        } else {
            i++;
        }
    }
    add_part(e, NULL, lit, len - lit);
    cf_val_free(&p.tok.val);
    collect_idents(e);
    *out = e;
    return 0;
}

bool cf_expr_is_dynamic(const struct cf_expr *e)
{
    if (!e)
        return false;
    for (size_t i = 0; i < e->nparts; i++) {
        if (e->parts[i].root)
            return true;
    }
    return false;
}

const char *cf_expr_single_identifier(const struct cf_expr *e)
{
    if (!e || e->nparts != 1 || !e->parts[0].root || e->parts[0].root->kind != N_IDENT)
        return NULL;
    return e->parts[0].root->name;
}

const char *cf_expr_text(const struct cf_expr *e)
{
    return e ? e->text : NULL;
}

void cf_expr_foreach_identifier(const struct cf_expr *e, void (*fn)(void *arg, const char *name),
                                void *arg)
{
    if (!e || !fn)
        return;
    for (size_t i = 0; i < e->nidents; i++)
        fn(arg, e->idents[i]);
}

void cf_expr_free(struct cf_expr *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nnodes; i++) {
        struct node *n = e->nodes[i];
        cf_val_free(&n->lit);
        free(n->name);
        free(n->items);
        free(n->ops);
        free(n);
    }
    free(e->nodes);
    free(e->parts);
    free(e->idents);
    free(e->text);
    free(e);
}

/* ---------------------------------------------------------------------------------------------
 * Values and coercions
 */

/* Converts a JSON value read by navigation: scalars become the matching typed value so that
 * comparisons and arithmetic work on them; objects and arrays stay JSON. NULL (a missing
 * member) is null. */
static void json_to_val(json_t *j, struct cf_val *out)
{
    if (!j) {
        cf_val_set_null(out);
        return;
    }
    switch (json_typeof(j)) {
    case JSON_STRING:
        cf_val_set_stringn(out, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        cf_val_set_long(out, (int64_t)json_integer_value(j));
        break;
    case JSON_REAL:
        cf_val_set_double(out, json_real_value(j));
        break;
    case JSON_TRUE:
        cf_val_set_bool(out, true);
        break;
    case JSON_FALSE:
        cf_val_set_bool(out, false);
        break;
    case JSON_NULL:
        cf_val_set_null(out);
        break;
    default:
        cf_val_take_json(out, json_incref(j));
        break;
    }
}

/* A Json variable may hold a scalar; operators see it as the matching typed value. */
static void unwrap(struct cf_val *v)
{
    if (v->type == CF_VALUE_JSON && !json_is_object(v->u.json) && !json_is_array(v->u.json)) {
        struct cf_val tmp = CF_VAL_NULL_INIT;
        json_to_val(v->u.json, &tmp);
        cf_val_move(v, &tmp);
    }
}

/* "a Long", "a JSON array", "null": for messages, after unwrap(). */
static const char *describe(const struct cf_val *v)
{
    switch (v->type) {
    case CF_VALUE_NULL:
        return "null";
    case CF_VALUE_STRING:
        return "a String";
    case CF_VALUE_LONG:
        return "a Long";
    case CF_VALUE_DOUBLE:
        return "a Double";
    case CF_VALUE_BOOLEAN:
        return "a Boolean";
    case CF_VALUE_BYTES:
        return "a Bytes value";
    case CF_VALUE_DATE:
        return "a Date";
    case CF_VALUE_JSON:
        return json_is_array(v->u.json) ? "a JSON array" : "a JSON object";
    }
    return "a value of unknown type";
}

/* JUEL's coercion of a String to a number: Long when it is an integer, Double when it has a
 * fraction or an exponent (or does not fit a Long). No white space, hex, NaN or Infinity. */
static bool string_to_number(const char *s, struct cf_val *out)
{
    const char *q = s;
    size_t digits = 0;
    bool is_float = false;
    if (*q == '+' || *q == '-')
        q++;
    for (; is_digit((unsigned char)*q); q++)
        digits++;
    if (*q == '.') {
        is_float = true;
        for (q++; is_digit((unsigned char)*q); q++)
            digits++;
    }
    if (digits == 0)
        return false;
    if (*q == 'e' || *q == 'E') {
        is_float = true;
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!is_digit((unsigned char)*q))
            return false;
        while (is_digit((unsigned char)*q))
            q++;
    }
    if (*q)
        return false;
    if (!is_float) {
        errno = 0;
        long long l = strtoll(s, NULL, 10);
        if (errno == 0) {
            cf_val_set_long(out, (int64_t)l);
            return true;
        }
    }
    double d = strtod(s, NULL);
    if (!isfinite(d))
        return false;
    cf_val_set_double(out, d);
    return true;
}

static bool is_number(const struct cf_val *v)
{
    return v->type == CF_VALUE_LONG || v->type == CF_VALUE_DOUBLE;
}

static double as_double(const struct cf_val *v)
{
    return v->type == CF_VALUE_LONG ? (double)v->u.l : v->u.d;
}

/* Exact comparison of a Long with a Double: converting the Long to double would round large
 * values and call 2^53 + 1 equal to 2^53. */
static int cmp_long_double(int64_t l, double d)
{
    if (d >= 0x1p63)
        return -1;
    if (d < -0x1p63)
        return 1;
    int64_t t = (int64_t)d; /* in range: -2^63 <= d < 2^63 */
    if (l != t)
        return l < t ? -1 : 1;
    double frac = d - (double)t; /* exact: the fractional part of a double is a double */
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_numbers(const struct cf_val *a, const struct cf_val *b)
{
    if (a->type == CF_VALUE_LONG && b->type == CF_VALUE_LONG)
        return (a->u.l > b->u.l) - (a->u.l < b->u.l);
    if (a->type == CF_VALUE_DOUBLE && b->type == CF_VALUE_DOUBLE)
        return (a->u.d > b->u.d) - (a->u.d < b->u.d);
    if (a->type == CF_VALUE_LONG)
        return cmp_long_double(a->u.l, b->u.d);
    return -cmp_long_double(b->u.l, a->u.d);
}

/* "true"/"false" in any case, as Camunda converts condition results. */
static bool string_to_bool(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(s, "false") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* A Boolean, or a String "true"/"false" compared with a Boolean. */
static bool bool_operand(const struct cf_val *v, bool *out)
{
    if (v->type == CF_VALUE_BOOLEAN) {
        *out = v->u.b;
        return true;
    }
    return v->type == CF_VALUE_STRING && string_to_bool(v->u.s, out);
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation
 */

struct ev {
    const struct cf_expr *e;
    cf_expr_lookup_fn lookup;
    void *ctx;
    char *err;
    size_t errlen;
};

static int everr(const struct ev *c, int rc, size_t off, const char *fmt, ...) CF_PRINTF(4, 5);

static int everr(const struct ev *c, int rc, size_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c->err, c->errlen, c->e->text, off, fmt, ap);
    va_end(ap);
    return rc;
}

/* JUEL's coercion to Boolean for !, &&, || and ?: : null and "" are false, and "true"/"false"
 * convert; unlike JUEL, any other string is an error rather than a silent false. */
static int to_bool(const struct ev *c, size_t off, const char *opname, struct cf_val *v, bool *out)
{
    unwrap(v);
    switch (v->type) {
    case CF_VALUE_NULL:
        *out = false;
        return 0;
    case CF_VALUE_BOOLEAN:
        *out = v->u.b;
        return 0;
    case CF_VALUE_STRING:
        if (v->u.s[0] == '\0') {
            *out = false;
            return 0;
        }
        if (string_to_bool(v->u.s, out))
            return 0;
        return everr(c, CF_ETYPE, off, "cannot use the String '%.*s%s' as a Boolean in '%s'",
                     QUOTE_MAX, v->u.s, strlen(v->u.s) > QUOTE_MAX ? "..." : "", opname);
    default:
        return everr(c, CF_ETYPE, off, "cannot use %s as a Boolean in '%s'", describe(v), opname);
    }
}

/* JUEL's coercion to a number for arithmetic: null is 0, a numeric String converts. */
static int to_number(const struct ev *c, size_t off, const char *opname, struct cf_val *v)
{
    unwrap(v);
    switch (v->type) {
    case CF_VALUE_NULL:
        cf_val_set_long(v, 0);
        return 0;
    case CF_VALUE_LONG:
    case CF_VALUE_DOUBLE:
        return 0;
    case CF_VALUE_STRING:
        if (string_to_number(v->u.s, v))
            return 0;
        return everr(c, CF_ETYPE, off, "cannot convert the String '%.*s%s' to a number for '%s'",
                     QUOTE_MAX, v->u.s, strlen(v->u.s) > QUOTE_MAX ? "..." : "", opname);
    default:
        return everr(c, CF_ETYPE, off, "cannot apply '%s' to %s", opname, describe(v));
    }
}

static int arith(const struct ev *c, enum op op, size_t off, struct cf_val *a, struct cf_val *b,
                 struct cf_val *out)
{
    const char *name = op_names[op];
    int rc = to_number(c, off, name, a);
    if (rc == 0)
        rc = to_number(c, off, name, b);
    if (rc)
        return rc;
    /* JUEL divides as doubles even when both operands are integers: 1 / 2 is 0.5. */
    if (a->type == CF_VALUE_LONG && b->type == CF_VALUE_LONG && op != OP_DIV) {
        int64_t x = a->u.l, y = b->u.l, r = 0;
        bool overflow = false;
        switch (op) {
        case OP_ADD:
            overflow = __builtin_add_overflow(x, y, &r);
            break;
        case OP_SUB:
            overflow = __builtin_sub_overflow(x, y, &r);
            break;
        case OP_MUL:
            overflow = __builtin_mul_overflow(x, y, &r);
            break;
        default: /* OP_MOD */
            if (y == 0)
                return everr(c, CF_EEXPR, off, "division by zero");
            /* INT64_MIN % -1 traps on x86; the mathematical answer is 0. */
            r = y == -1 ? 0 : x % y;
            break;
        }
        if (overflow)
            return everr(c, CF_EEXPR, off, "integer overflow in '%s'", name);
        cf_val_set_long(out, r);
        return 0;
    }
    double x = as_double(a), y = as_double(b), r;
    switch (op) {
    case OP_ADD:
        r = x + y;
        break;
    case OP_SUB:
        r = x - y;
        break;
    case OP_MUL:
        r = x * y;
        break;
    case OP_DIV:
        if (y == 0)
            return everr(c, CF_EEXPR, off, "division by zero");
        r = x / y;
        break;
    default: /* OP_MOD */
        if (y == 0)
            return everr(c, CF_EEXPR, off, "division by zero");
        r = fmod(x, y);
        break;
    }
    /* Variables must hold finite doubles (cf_val_from_abi refuses others), so overflow to
     * infinity is an error here rather than a value that cannot be stored. */
    if (!isfinite(r))
        return everr(c, CF_EEXPR, off, "the result of '%s' is not a finite number", name);
    cf_val_set_double(out, r);
    return 0;
}

static int incompatible(const struct ev *c, size_t off, enum op op, const struct cf_val *a,
                        const struct cf_val *b)
{
    return everr(c, CF_ETYPE, off, "cannot compare %s with %s using '%s'", describe(a), describe(b),
                 op_names[op]);
}

/* Orders two non-null values as JUEL does: numbers numerically (a String beside a number is
 * converted), Booleans (a String "true"/"false" beside one converts), Strings with strcmp, Dates
 * by time. Json and Bytes values can only be tested for equality (*cmp 0 or 1). */
static int compare(const struct ev *c, enum op op, size_t off, struct cf_val *a, struct cf_val *b,
                   int *cmp)
{
    bool equality = op == OP_EQ || op == OP_NE;
    if (is_number(a) || is_number(b)) {
        struct cf_val *v[2] = {a, b};
        for (int i = 0; i < 2; i++) {
            if (v[i]->type == CF_VALUE_STRING) {
                int rc = to_number(c, off, op_names[op], v[i]);
                if (rc)
                    return rc;
            } else if (!is_number(v[i])) {
                return incompatible(c, off, op, a, b);
            }
        }
        if ((a->type == CF_VALUE_DOUBLE && isnan(a->u.d)) ||
            (b->type == CF_VALUE_DOUBLE && isnan(b->u.d)))
            return everr(c, CF_EEXPR, off, "cannot compare NaN using '%s'", op_names[op]);
        *cmp = cmp_numbers(a, b);
        return 0;
    }
    if (a->type == CF_VALUE_BOOLEAN || b->type == CF_VALUE_BOOLEAN) {
        bool x = false, y = false;
        if (!bool_operand(a, &x) || !bool_operand(b, &y))
            return incompatible(c, off, op, a, b);
        *cmp = (int)x - (int)y;
        return 0;
    }
    if (a->type != b->type)
        return incompatible(c, off, op, a, b);
    switch (a->type) {
    case CF_VALUE_STRING: {
        int r = strcmp(a->u.s, b->u.s);
        *cmp = (r > 0) - (r < 0);
        return 0;
    }
    case CF_VALUE_DATE:
        *cmp = (a->u.l > b->u.l) - (a->u.l < b->u.l);
        return 0;
    case CF_VALUE_JSON:
        if (!equality)
            break;
        *cmp = json_equal(a->u.json, b->u.json) ? 0 : 1;
        return 0;
    case CF_VALUE_BYTES:
        if (!equality)
            break;
        *cmp = cf_val_equal(a, b) ? 0 : 1;
        return 0;
    default:
        break;
    }
    return incompatible(c, off, op, a, b);
}

static int relation(const struct ev *c, enum op op, size_t off, struct cf_val *a, struct cf_val *b,
                    struct cf_val *out)
{
    unwrap(a);
    unwrap(b);
    bool anull = a->type == CF_VALUE_NULL, bnull = b->type == CF_VALUE_NULL;
    bool r;
    if (anull || bnull) {
        /* JUEL: null equals only null, and orders against nothing (null <= null holds). */
        bool both = anull && bnull;
        switch (op) {
        case OP_EQ:
            r = both;
            break;
        case OP_NE:
            r = !both;
            break;
        case OP_LE:
        case OP_GE:
            r = both;
            break;
        default:
            r = false;
            break;
        }
    } else {
        int cmp = 0;
        int rc = compare(c, op, off, a, b, &cmp);
        if (rc)
            return rc;
        switch (op) {
        case OP_EQ:
            r = cmp == 0;
            break;
        case OP_NE:
            r = cmp != 0;
            break;
        case OP_LT:
            r = cmp < 0;
            break;
        case OP_GT:
            r = cmp > 0;
            break;
        case OP_LE:
            r = cmp <= 0;
            break;
        default: /* OP_GE */
            r = cmp >= 0;
            break;
        }
    }
    cf_val_set_bool(out, r);
    return 0;
}

static int eval(const struct ev *c, const struct node *n, int depth, struct cf_val *out);

static int eval_ident(const struct ev *c, const struct node *n, struct cf_val *out)
{
    const struct cf_val *v = NULL;
    int rc = c->lookup ? c->lookup(c->ctx, n->name, &v) : CF_ENOENT;
    if (rc == CF_ENOENT) {
        cf_errf(
            c->err, c->errlen,
            "Unknown property used in expression: %.*s%s. Cause: Cannot resolve identifier '%.*s'",
            text_quote_len(c->e->text), c->e->text, text_ellipsis(c->e->text), QUOTE_MAX, n->name);
        return CF_ENOENT;
    }
    if (rc != 0)
        return everr(c, rc < 0 ? rc : CF_EEXPR, n->off, "cannot read variable '%s': %s", n->name,
                     cf_strerror(rc));
    if (v)
        cf_val_copy(out, v);
    else
        cf_val_set_null(out);
    return 0;
}

static int eval_member(const struct ev *c, const struct node *n, int depth, struct cf_val *out)
{
    struct cf_val base = CF_VAL_NULL_INIT;
    int rc = eval(c, n->a, depth + 1, &base);
    if (rc)
        return rc;
    unwrap(&base);
    if (base.type == CF_VALUE_JSON && json_is_object(base.u.json))
        json_to_val(json_object_get(base.u.json, n->name), out);
    else
        rc = everr(c, CF_ETYPE, n->off,
                   "cannot read property '%.*s' of %s (only JSON objects have properties)",
                   QUOTE_MAX, n->name, describe(&base));
    cf_val_free(&base);
    return rc;
}

static int array_index(const struct ev *c, const struct node *n, struct cf_val *idx, int64_t *out)
{
    if (idx->type == CF_VALUE_STRING && !string_to_number(idx->u.s, idx))
        return everr(c, CF_ETYPE, n->off,
                     "an array index must be an integer, not the String '%.*s'", QUOTE_MAX,
                     idx->u.s);
    if (idx->type == CF_VALUE_LONG) {
        *out = idx->u.l;
        return 0;
    }
    if (idx->type == CF_VALUE_DOUBLE && idx->u.d == floor(idx->u.d) && idx->u.d >= -0x1p63 &&
        idx->u.d < 0x1p63) {
        *out = (int64_t)idx->u.d;
        return 0;
    }
    return everr(c, CF_ETYPE, n->off, "an array index must be an integer, not %s", describe(idx));
}

static int eval_index(const struct ev *c, const struct node *n, int depth, struct cf_val *out)
{
    struct cf_val base = CF_VAL_NULL_INIT, idx = CF_VAL_NULL_INIT;
    int rc = eval(c, n->a, depth + 1, &base);
    if (rc == 0)
        rc = eval(c, n->b, depth + 1, &idx);
    if (rc)
        goto out;
    unwrap(&base);
    unwrap(&idx);
    if (base.type == CF_VALUE_JSON && json_is_array(base.u.json)) {
        int64_t i = 0;
        rc = array_index(c, n, &idx, &i);
        if (rc)
            goto out;
        /* As JUEL's list resolver: an index outside the array reads null. */
        if (i < 0 || (uint64_t)i >= json_array_size(base.u.json))
            cf_val_set_null(out);
        else
            json_to_val(json_array_get(base.u.json, (size_t)i), out);
    } else if (base.type == CF_VALUE_JSON) {
        char num[32];
        const char *key;
        if (idx.type == CF_VALUE_STRING) {
            key = idx.u.s;
        } else if (idx.type == CF_VALUE_LONG) {
            snprintf(num, sizeof(num), "%" PRId64, idx.u.l);
            key = num;
        } else {
            rc = everr(c, CF_ETYPE, n->off, "a property name must be a String or a Long, not %s",
                       describe(&idx));
            goto out;
        }
        json_to_val(json_object_get(base.u.json, key), out);
    } else {
        rc = everr(c, CF_ETYPE, n->off,
                   "cannot use [] on %s (only JSON arrays and objects can be indexed)",
                   describe(&base));
    }
out:
    cf_val_free(&base);
    cf_val_free(&idx);
    return rc;
}

static bool is_empty(struct cf_val *v)
{
    unwrap(v);
    switch (v->type) {
    case CF_VALUE_NULL:
        return true;
    case CF_VALUE_STRING:
        return v->u.s[0] == '\0';
    case CF_VALUE_BYTES:
        return v->u.bytes.len == 0;
    case CF_VALUE_JSON:
        return json_is_array(v->u.json) ? json_array_size(v->u.json) == 0
                                        : json_object_size(v->u.json) == 0;
    default:
        return false;
    }
}

static int eval_unary(const struct ev *c, const struct node *n, int depth, struct cf_val *out)
{
    struct cf_val v = CF_VAL_NULL_INIT;
    int rc = eval(c, n->a, depth + 1, &v);
    if (rc)
        return rc;
    switch (n->op) {
    case OP_NOT: {
        bool b = false;
        rc = to_bool(c, n->off, op_names[n->op], &v, &b);
        if (rc == 0)
            cf_val_set_bool(out, !b);
        break;
    }
    case OP_NEG:
        rc = to_number(c, n->off, op_names[n->op], &v);
        if (rc)
            break;
        if (v.type == CF_VALUE_DOUBLE)
            cf_val_set_double(out, -v.u.d);
        else if (v.u.l == INT64_MIN)
            rc = everr(c, CF_EEXPR, n->off, "integer overflow in '-'");
        else
            cf_val_set_long(out, -v.u.l);
        break;
    default: /* OP_EMPTY */
        cf_val_set_bool(out, is_empty(&v));
        break;
    }
    cf_val_free(&v);
    return rc;
}

static int eval_cond(const struct ev *c, const struct node *n, int depth, struct cf_val *out)
{
    struct cf_val v = CF_VAL_NULL_INIT;
    bool b = false;
    int rc = eval(c, n->a, depth + 1, &v);
    if (rc == 0)
        rc = to_bool(c, n->off, "?:", &v, &b);
    cf_val_free(&v);
    if (rc)
        return rc;
    /* Only the branch taken is evaluated. */
    return eval(c, b ? n->b : n->c, depth + 1, out);
}

static int eval_chain(const struct ev *c, const struct node *n, int depth, struct cf_val *out)
{
    enum op first = n->ops[0].op;
    int rc;
    if (first == OP_OR || first == OP_AND) {
        /* Short-circuit: stop at the first operand that decides the result. */
        bool decisive = first == OP_OR;
        for (size_t i = 0; i < n->nitems; i++) {
            struct cf_val v = CF_VAL_NULL_INIT;
            bool b = false;
            size_t off = n->ops[i ? i - 1 : 0].off;
            rc = eval(c, n->items[i], depth + 1, &v);
            if (rc == 0)
                rc = to_bool(c, off, op_names[first], &v, &b);
            cf_val_free(&v);
            if (rc)
                return rc;
            if (b == decisive) {
                cf_val_set_bool(out, decisive);
                return 0;
            }
        }
        cf_val_set_bool(out, !decisive);
        return 0;
    }
    struct cf_val acc = CF_VAL_NULL_INIT;
    rc = eval(c, n->items[0], depth + 1, &acc);
    for (size_t i = 1; rc == 0 && i < n->nitems; i++) {
        struct cf_val rhs = CF_VAL_NULL_INIT, res = CF_VAL_NULL_INIT;
        const struct chain_op *op = &n->ops[i - 1];
        rc = eval(c, n->items[i], depth + 1, &rhs);
        if (rc == 0) {
            if (op->op >= OP_ADD)
                rc = arith(c, op->op, op->off, &acc, &rhs, &res);
            else
                rc = relation(c, op->op, op->off, &acc, &rhs, &res);
        }
        cf_val_free(&rhs);
        cf_val_move(&acc, &res);
    }
    if (rc == 0)
        cf_val_move(out, &acc);
    cf_val_free(&acc);
    return rc;
}

/* Evaluates `n` into `out`, which is null on entry and stays null on error. */
static int eval(const struct ev *c, const struct node *n, int depth, struct cf_val *out)
{
    /* The parser caps the tree's height, so this only guards against a future parser bug. */
    if (depth > CF_EXPR_MAX_DEPTH)
        return everr(c, CF_ELIMIT, n->off, "expression nested too deeply (more than %d levels)",
                     CF_EXPR_MAX_DEPTH);
    switch (n->kind) {
    case N_LIT:
        cf_val_copy(out, &n->lit);
        return 0;
    case N_IDENT:
        return eval_ident(c, n, out);
    case N_MEMBER:
        return eval_member(c, n, depth, out);
    case N_INDEX:
        return eval_index(c, n, depth, out);
    case N_UNARY:
        return eval_unary(c, n, depth, out);
    case N_COND:
        return eval_cond(c, n, depth, out);
    case N_CHAIN:
        return eval_chain(c, n, depth, out);
    }
    return everr(c, CF_EEXPR, n->off, "unknown expression node");
}

int cf_expr_eval(const struct cf_expr *e, cf_expr_lookup_fn lookup, void *ctx, struct cf_val *out,
                 char *err, size_t errlen)
{
    if (!e || !out) {
        cf_errf(err, errlen, "cf_expr_eval: no expression or no place for the result");
        return CF_EINVAL;
    }
    struct ev c = {.e = e, .lookup = lookup, .ctx = ctx, .err = err, .errlen = errlen};
    struct cf_val result = CF_VAL_NULL_INIT;
    if (e->nparts == 1 && e->parts[0].root) {
        int rc = eval(&c, e->parts[0].root, 1, &result);
        if (rc)
            return rc;
        cf_val_move(out, &result);
        return 0;
    }
    struct cf_buf b;
    cf_buf_init(&b);
    for (size_t i = 0; i < e->nparts; i++) {
        const struct part *part = &e->parts[i];
        if (!part->root) {
            cf_buf_append(&b, e->text + part->off, part->len);
            continue;
        }
        int rc = eval(&c, part->root, 1, &result);
        if (rc) {
            cf_buf_free(&b);
            return rc;
        }
        unwrap(&result);
        /* JUEL renders null as nothing in composite text, not as "null". */
        if (result.type != CF_VALUE_NULL)
            cf_val_to_text(&result, &b);
        cf_val_free(&result);
        if (b.len > MAX_RESULT_LEN) {
            cf_buf_free(&b);
            return everr(&c, CF_ELIMIT, part->off, "the text is longer than the limit of %u bytes",
                         MAX_RESULT_LEN);
        }
    }
    cf_val_take_string(&result, cf_buf_steal(&b));
    cf_val_move(out, &result);
    return 0;
}

int cf_expr_eval_bool(const struct cf_expr *e, cf_expr_lookup_fn lookup, void *ctx, bool *out,
                      char *err, size_t errlen)
{
    struct cf_val v = CF_VAL_NULL_INIT;
    int rc = cf_expr_eval(e, lookup, ctx, &v, err, errlen);
    if (rc)
        return rc;
    unwrap(&v);
    bool b = false;
    if (v.type == CF_VALUE_BOOLEAN) {
        b = v.u.b;
    } else if (v.type != CF_VALUE_STRING || !string_to_bool(v.u.s, &b)) {
        char what[QUOTE_MAX + 32];
        if (v.type == CF_VALUE_STRING)
            snprintf(what, sizeof(what), "the String '%.*s%s'", QUOTE_MAX, v.u.s,
                     strlen(v.u.s) > QUOTE_MAX ? "..." : "");
        else
            snprintf(what, sizeof(what), "%s", describe(&v));
        cf_errf(err, errlen, "expression error in '%.*s%s': condition must be a boolean, not %s",
                text_quote_len(e->text), e->text, text_ellipsis(e->text), what);
        cf_val_free(&v);
        return CF_ETYPE;
    }
    cf_val_free(&v);
    *out = b;
    return 0;
}
