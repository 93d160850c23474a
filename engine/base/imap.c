/*
 * int64 → pointer map (see imap.h). Keys are mixed with a 64-bit finalizer so that sequential
 * row ids spread over the table.
 */
#include "base/imap.h"

#include <stdlib.h>

#include "base/base.h"

static size_t slot_of(const struct cf_imap *m, int64_t key)
{
    uint64_t h = (uint64_t)key;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & (m->cap - 1);
}

void cf_imap_init(struct cf_imap *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->count = 0;
}

void cf_imap_free(struct cf_imap *m)
{
    free(m->slots);
    cf_imap_init(m);
}

void *cf_imap_get(const struct cf_imap *m, int64_t key)
{
    if (!m->cap || !key)
        return NULL;
    for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key)
            return m->slots[i].value;
        if (!m->slots[i].key)
            return NULL;
    }
}

static void grow(struct cf_imap *m)
{
    struct cf_imap old = *m;
    m->cap = old.cap ? old.cap * 2 : 16;
    m->slots = cf_xcalloc(m->cap, sizeof(*m->slots));
    m->count = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            cf_imap_put(m, old.slots[i].key, old.slots[i].value);
    free(old.slots);
}

void cf_imap_put(struct cf_imap *m, int64_t key, void *value)
{
    if ((m->count + 1) * 4 > m->cap * 3)
        grow(m);
    for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key) {
            m->slots[i].value = value;
            return;
        }
        if (!m->slots[i].key) {
            m->slots[i].key = key;
            m->slots[i].value = value;
            m->count++;
            return;
        }
    }
}

void *cf_imap_del(struct cf_imap *m, int64_t key)
{
    if (!m->cap || !key)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = slot_of(m, key);
    while (m->slots[i].key != key) {
        if (!m->slots[i].key)
            return NULL;
        i = (i + 1) & mask;
    }
    void *value = m->slots[i].value;
    /* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].key)
            break;
        size_t home = slot_of(m, m->slots[j].key);
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].value = NULL;
    m->count--;
    return value;
}
