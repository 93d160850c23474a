/*
 * A JUEL subset for ${...} expressions in BPMN (conditions, input/output parameters, fields,
 * task parameters). It is deliberately not Turing-complete: no method calls, no functions,
 * no assignment, no loops; compile and evaluation cost are bounded by the text length, which
 * is itself capped (CF_EXPR_MAX_LEN), as is nesting depth (CF_EXPR_MAX_DEPTH).
 *
 * Grammar (JUEL precedence, lowest first):
 *   expr    := cond
 *   cond    := or ( '?' cond ':' cond )?
 *   or      := and ( ('||' | 'or') and )*
 *   and     := eq ( ('&&' | 'and') eq )*
 *   eq      := rel ( ('==' | 'eq' | '!=' | 'ne') rel )*
 *   rel     := add ( ('<' | 'lt' | '>' | 'gt' | '<=' | 'le' | '>=' | 'ge') add )*
 *   add     := mul ( ('+' | '-') mul )*
 *   mul     := unary ( ('*' | '/' | 'div' | '%' | 'mod') unary )*
 *   unary   := ('!' | 'not' | '-' | 'empty') unary | path
 *   path    := primary ( '.' IDENT | '[' expr ']' )*
 *   primary := literal | IDENT | '(' expr ')'
 *   literal := 'true' | 'false' | 'null' | integer | decimal | 'single' or "double" quoted string
 *
 * A template is text with embedded ${...}: a template that is exactly one ${expr} yields the
 * typed value of expr; otherwise the parts are converted to text and concatenated (a string).
 * Text without ${ is a literal string. "#{...}" is treated like "${...}" (JUEL deferred syntax).
 *
 * Semantics follow JUEL/Camunda 7 where models depend on it: an unknown variable is an error
 * ("Unknown property used in expression: ${x}. Cause: Cannot resolve identifier 'x'");
 * a.b on a JSON object reads member b (missing member → null); a[0] indexes a JSON array;
 * `empty` is true for null, "", an empty JSON array or object; == compares numbers numerically
 * and strings textually; + on two numbers adds (long unless either is double), + with a string
 * is an error as in JUEL (use a template to concatenate); integer / is a double division as in
 * JUEL; % and div/mod by zero are errors; comparisons of incompatible types are errors.
 *
 * Errors name the position: "expression error at column 7 of '${a > }': unexpected end".
 * Ownership: cf_expr_compile() returns a tree the caller frees with cf_expr_free(); results of
 * evaluation are owned by the caller (cf_val_free()). Lookups return borrowed values.
 */
#ifndef CF_EXPR_H
#define CF_EXPR_H

#include <stdbool.h>
#include <stddef.h>

#include "base/value.h"

#define CF_EXPR_MAX_LEN 65536
#define CF_EXPR_MAX_DEPTH 64

struct cf_expr;

/* Resolves a top-level identifier. Returns 0 and sets *out (borrowed, valid for the rest of the
 * evaluation), or CF_ENOENT when the variable does not exist. */
typedef int (*cf_expr_lookup_fn)(void *ctx, const char *name, const struct cf_val **out);

/* Compiles a template (see above). */
int cf_expr_compile(const char *text, struct cf_expr **out, char *err, size_t errlen);
/* True when the template contains at least one ${...}; false for plain literal text. */
bool cf_expr_is_dynamic(const struct cf_expr *e);
/* When the template is exactly "${identifier}", returns the identifier (borrowed), else NULL.
 * Used for camunda:delegateExpression="${taskName}". */
const char *cf_expr_single_identifier(const struct cf_expr *e);
/* The source text (borrowed). */
const char *cf_expr_text(const struct cf_expr *e);
/* Calls `fn` once for each top-level identifier the template reads (deduplicated). */
void cf_expr_foreach_identifier(const struct cf_expr *e, void (*fn)(void *arg, const char *name),
                                void *arg);
int cf_expr_eval(const struct cf_expr *e, cf_expr_lookup_fn lookup, void *ctx, struct cf_val *out,
                 char *err, size_t errlen);
void cf_expr_free(struct cf_expr *e);

/* JUEL truthiness for conditions: a Boolean is itself; the string "true"/"false" (any case) is
 * converted; anything else is an error ("condition must be a boolean"). */
int cf_expr_eval_bool(const struct cf_expr *e, cf_expr_lookup_fn lookup, void *ctx, bool *out,
                      char *err, size_t errlen);

#endif
