/*
 * The parts of the BPMN model that do not parse: diagnostics, the arena that owns a model, the id
 * index behind cf_model_find(), element type names and freeing. Building a model from XML is
 * loader.c's job; running it belongs to run/.
 */
#include "bpmn/model.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpmn/model_internal.h"

/* ---- diagnostics ---- */

void cf_diags_init(struct cf_diags *d)
{
    d->items = NULL;
    d->count = 0;
    d->cap = 0;
}

void cf_diags_free(struct cf_diags *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->count; i++) {
        free(d->items[i].element_id);
        free(d->items[i].message);
    }
    free(d->items);
    cf_diags_init(d);
}

void cf_diags_add(struct cf_diags *d, int line, const char *element_id, const char *fmt, ...)
{
    if (d->count == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->items = cf_xrealloc(d->items, d->cap * sizeof(*d->items));
    }
    /* Most messages fit the stack buffer; longer ones are formatted a second time. */
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    char *msg;
    if (n < 0) {
        msg = cf_xstrdup("");
    } else if ((size_t)n < sizeof(small)) {
        msg = cf_xstrdup(small);
    } else {
        msg = cf_xmalloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    struct cf_diag *it = &d->items[d->count++];
    it->line = line > 0 ? line : 0;
    it->element_id = element_id ? cf_xstrdup(element_id) : NULL;
    it->message = msg;
}

void cf_diags_format(const struct cf_diags *d, const char *file, struct cf_buf *out)
{
    for (size_t i = 0; i < d->count; i++) {
        const struct cf_diag *it = &d->items[i];
        bool prefix = false;
        if (file) {
            cf_buf_puts(out, file);
            prefix = true;
        }
        if (it->line > 0) {
            if (prefix)
                cf_buf_putc(out, ':');
            cf_buf_printf(out, "%d", it->line);
            prefix = true;
        }
        if (prefix)
            cf_buf_puts(out, ": ");
        if (it->element_id && it->element_id[0])
            cf_buf_printf(out, "%s: ", it->element_id);
        cf_buf_puts(out, it->message);
        cf_buf_putc(out, '\n');
    }
}

/* ---- string map (open addressing, linear probing) ---- */

static uint64_t hash_str(const char *s)
{
    /* FNV-1a: ids are short and attacker-chosen collisions only cost time bounded by the
     * element limit of the loader. */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void cf__strmap_init(struct cf__strmap *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->count = 0;
}

void cf__strmap_free(struct cf__strmap *m)
{
    if (!m)
        return;
    free(m->keys);
    free(m->vals);
    cf__strmap_init(m);
}

void *cf__strmap_get(const struct cf__strmap *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash_str(key) & mask;; i = (i + 1) & mask) {
        if (!m->keys[i])
            return NULL;
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
}

static void strmap_grow(struct cf__strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    const char **keys = cf_xcalloc(cap, sizeof(*keys));
    void **vals = cf_xcalloc(cap, sizeof(*vals));
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->keys[j])
            continue;
        size_t i = (size_t)hash_str(m->keys[j]) & (cap - 1);
        while (keys[i])
            i = (i + 1) & (cap - 1);
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
}

void *cf__strmap_put(struct cf__strmap *m, const char *key, void *val)
{
    /* Keep the load factor at or below one half so probes stay short. */
    if ((m->count + 1) * 2 > m->cap)
        strmap_grow(m);
    size_t mask = m->cap - 1;
    size_t i = (size_t)hash_str(key) & mask;
    for (; m->keys[i]; i = (i + 1) & mask) {
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->count++;
    return NULL;
}

/* ---- arena ---- */

#define CHUNK_SIZE 16384u

struct chunk {
    struct chunk *next;
    size_t used;
    size_t cap;
    max_align_t data[];
};

struct cf__arena {
    struct chunk *chunks; /* the first one is the one being filled */
    struct cf_expr **exprs;
    size_t n_exprs;
    size_t cap_exprs;
    struct cf__strmap index;
};

struct cf__arena *cf__arena_new(void)
{
    struct cf__arena *a = cf_xcalloc(1, sizeof(*a));
    cf__strmap_init(&a->index);
    return a;
}

static struct chunk *chunk_new(size_t cap)
{
    struct chunk *c = cf_xmalloc(sizeof(*c) + cap);
    c->next = NULL;
    c->used = 0;
    c->cap = cap;
    return c;
}

void *cf__arena_alloc(struct cf__arena *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - align) {
        cf_log(CF_LOG_ERROR, "arena allocation of %zu bytes overflows; exiting", n);
        abort();
    }
    n = (n + align - 1) & ~(align - 1);
    struct chunk *c = a->chunks;
    if (n > CHUNK_SIZE / 4) {
        /* Large blocks get a chunk of their own behind the current one, so the space left in
         * the current chunk is not wasted. */
        struct chunk *big = chunk_new(n);
        big->used = n;
        if (c) {
            big->next = c->next;
            c->next = big;
        } else {
            a->chunks = big;
        }
        memset(big->data, 0, n);
        return big->data;
    }
    if (!c || c->cap - c->used < n) {
        c = chunk_new(CHUNK_SIZE);
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void *cf__arena_calloc(struct cf__arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) {
        cf_log(CF_LOG_ERROR, "arena allocation of %zu x %zu bytes overflows; exiting", count, size);
        abort();
    }
    return cf__arena_alloc(a, count * size);
}

char *cf__arena_strdup(struct cf__arena *a, const char *s)
{
    size_t n = strlen(s);
    char *p = cf__arena_alloc(a, n + 1);
    memcpy(p, s, n);
    return p;
}

void cf__arena_own_expr(struct cf__arena *a, struct cf_expr *e)
{
    if (!e)
        return;
    if (a->n_exprs == a->cap_exprs) {
        a->cap_exprs = a->cap_exprs ? a->cap_exprs * 2 : 16;
        a->exprs = cf_xrealloc(a->exprs, a->cap_exprs * sizeof(*a->exprs));
    }
    a->exprs[a->n_exprs++] = e;
}

struct cf__strmap *cf__arena_index(struct cf__arena *a)
{
    return &a->index;
}

void cf__arena_free(struct cf__arena *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_exprs; i++)
        cf_expr_free(a->exprs[i]);
    free(a->exprs);
    cf__strmap_free(&a->index);
    struct chunk *c = a->chunks;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

/* ---- models ---- */

void cf_model_free(struct cf_model *m)
{
    /* The model struct itself lives in its arena. */
    if (m)
        cf__arena_free(m->arena);
}

void cf_models_free(struct cf_model **models, size_t n)
{
    if (!models)
        return;
    for (size_t i = 0; i < n; i++)
        cf_model_free(models[i]);
    free(models);
}

struct cf_elem *cf_model_find(const struct cf_model *m, const char *id)
{
    if (!m || !id)
        return NULL;
    if (m->arena) {
        struct cf__strmap *index = cf__arena_index(m->arena);
        if (index->count)
            return cf__strmap_get(index, id);
    }
    for (size_t i = 0; i < m->n_elements; i++) {
        if (strcmp(m->elements[i]->id, id) == 0)
            return m->elements[i];
    }
    return NULL;
}

const char *cf_elem_type_name(const struct cf_elem *e)
{
    /* The names Camunda 7 reports as activityType (org.camunda.bpm.engine.ActivityTypes), so
     * that history and the REST API look the same to scripts written for Camunda. */
    switch (e->type) {
    case CF_EL_START_EVENT:
        switch (e->event) {
        case CF_EV_TIMER:
            return "startTimerEvent";
        case CF_EV_MESSAGE:
            return "messageStartEvent";
        case CF_EV_ERROR:
            return "errorStartEvent";
        default:
            return "startEvent";
        }
    case CF_EL_END_EVENT:
        switch (e->event) {
        case CF_EV_ERROR:
            return "errorEndEvent";
        case CF_EV_TERMINATE:
            return "terminateEndEvent";
        default:
            return "noneEndEvent";
        }
    case CF_EL_INTERMEDIATE_CATCH:
        return e->event == CF_EV_MESSAGE ? "intermediateMessageCatch" : "intermediateTimer";
    case CF_EL_INTERMEDIATE_THROW:
        return "intermediateNoneThrowEvent";
    case CF_EL_BOUNDARY_EVENT:
        switch (e->event) {
        case CF_EV_TIMER:
            return "boundaryTimer";
        case CF_EV_MESSAGE:
            return "boundaryMessage";
        default:
            return "boundaryError";
        }
    case CF_EL_TASK:
        return e->tag && strcmp(e->tag, "manualTask") == 0 ? "manualTask" : "task";
    case CF_EL_SERVICE_TASK:
        if (e->tag && strcmp(e->tag, "sendTask") == 0)
            return "sendTask";
        if (e->tag && strcmp(e->tag, "businessRuleTask") == 0)
            return "businessRuleTask";
        return "serviceTask";
    case CF_EL_RECEIVE_TASK:
        return "receiveTask";
    case CF_EL_EXCLUSIVE_GATEWAY:
        return "exclusiveGateway";
    case CF_EL_PARALLEL_GATEWAY:
        return "parallelGateway";
    case CF_EL_INCLUSIVE_GATEWAY:
        return "inclusiveGateway";
    case CF_EL_SUBPROCESS:
        return "subProcess";
    case CF_EL_CALL_ACTIVITY:
        return "callActivity";
    }
    return "unknown";
}

bool cf_elem_is_activity(const struct cf_elem *e)
{
    switch (e->type) {
    case CF_EL_TASK:
    case CF_EL_SERVICE_TASK:
    case CF_EL_RECEIVE_TASK:
    case CF_EL_SUBPROCESS:
    case CF_EL_CALL_ACTIVITY:
        return true;
    default:
        return false;
    }
}
