/*
 * A map from non-zero int64 keys to pointers (open addressing, linear probing, backward-shift
 * deletion). Used for the engine's caches keyed by row id. The map does not own the values.
 */
#ifndef CF_IMAP_H
#define CF_IMAP_H

#include <stddef.h>
#include <stdint.h>

struct cf_imap_slot {
    int64_t key; /* 0 = empty */
    void *value;
};

struct cf_imap {
    struct cf_imap_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
};

void cf_imap_init(struct cf_imap *m);
void cf_imap_free(struct cf_imap *m);
void *cf_imap_get(const struct cf_imap *m, int64_t key);
/* Inserts or replaces; key must not be 0. */
void cf_imap_put(struct cf_imap *m, int64_t key, void *value);
/* Removes and returns the value, or NULL. */
void *cf_imap_del(struct cf_imap *m, int64_t key);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... (no changes meanwhile).
 */

#endif
