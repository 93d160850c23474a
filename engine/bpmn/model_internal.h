/*
 * Internals shared by the BPMN loader (loader.c) and the model (model.c): the arena that owns a
 * model's memory, and a small string-keyed hash map used for the id index and for duplicate-id
 * checks. Nothing outside engine/bpmn/ includes this header.
 *
 * Ownership: an arena owns every block it hands out and every expression registered with it;
 * cf__arena_free() releases them all at once. A strmap borrows its keys; the caller keeps them
 * alive for the map's lifetime.
 */
#ifndef CF_BPMN_MODEL_INTERNAL_H
#define CF_BPMN_MODEL_INTERNAL_H

#include <stddef.h>

#include "bpmn/model.h"

struct cf__strmap {
    const char **keys;
    void **vals;
    size_t cap; /* a power of two, or 0 before the first insert */
    size_t count;
};

void cf__strmap_init(struct cf__strmap *m);
void cf__strmap_free(struct cf__strmap *m);
/* The value stored under `key`, or NULL. */
void *cf__strmap_get(const struct cf__strmap *m, const char *key);
/* Inserts `key` -> `val` unless the key is present; returns the value already stored under the
 * key (the map is then unchanged), or NULL when it inserted. `val` must not be NULL. */
void *cf__strmap_put(struct cf__strmap *m, const char *key, void *val);

struct cf__arena;

struct cf__arena *cf__arena_new(void);
/* Zeroed memory aligned for any type, owned by the arena. */
void *cf__arena_alloc(struct cf__arena *a, size_t n);
/* Zeroed array of `count` elements of `size` bytes; aborts on overflow like cf_xcalloc. */
void *cf__arena_calloc(struct cf__arena *a, size_t count, size_t size);
char *cf__arena_strdup(struct cf__arena *a, const char *s);
/* The arena takes ownership of `e` (NULL is ignored) and frees it with cf_expr_free(). */
void cf__arena_own_expr(struct cf__arena *a, struct cf_expr *e);
/* The id index of the model's elements, kept in the arena for cf_model_find(). */
struct cf__strmap *cf__arena_index(struct cf__arena *a);
void cf__arena_free(struct cf__arena *a);

#endif
