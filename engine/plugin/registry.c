/*
 * The plug-in registry (see registry.h): opens task plug-ins, checks once, at registration,
 * everything the engine later relies on about their definitions (ABI version, struct sizes, names,
 * aliases, parameter schemas), keeps one sorted index of task names and aliases, checks parameter
 * values against a schema and renders the `certflow tasks` manual. A module is registered whole or
 * not at all, so a task found here can be trusted by the runtime without further checks.
 * Running tasks and resolving parameter values are left to the runtime. A registry is used from one
 * thread (the loop thread); it takes no locks.
 */
#include "plugin/registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The end of a field: a struct whose `size` is at least this has the field. */
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* The least that a module of ABI 1.x provides: every field that ABI 1.0 defines. The registry hands
 * out task and parameter definitions that the runtime reads directly, so a definition that lacks a
 * 1.0 field is refused here rather than read out of bounds later. */
#define MODULE_MIN_SIZE END_OF(struct cf_module, tasks)
#define TASK_MIN_SIZE END_OF(struct cf_task_def, cancel)
#define PARAM_MIN_SIZE END_OF(struct cf_param_def, description)

/* Bounds on the NULL-terminated lists of a module. They are far beyond any real plug-in; they turn
 * a missing terminator into a message instead of an endless walk through memory. */
#define MAX_TASKS 1024
#define MAX_PARAMS 256
#define MAX_LIST 256

/* Values shown in messages are cut to this many bytes, so that a long TEXT parameter does not
 * flood a log line. */
#define SHOWN_VALUE_MAX 64

/* The manual wraps prose at this column. */
#define MANUAL_WIDTH 80

struct module_entry {
    const struct cf_module *m;
    void *handle; /* NULL for a module linked into the program */
    char *origin; /* file name, or the origin given to cf_registry_add_module */
};

struct task_entry {
    const struct cf_task_def *t;
    size_t module;
};

struct name_entry {
    const char *name; /* borrowed from the task definition */
    size_t task;
    bool alias;
};

struct cf_registry {
    const struct cf_host *host; /* borrowed: plug-ins may keep it, so it outlives the registry */
    struct module_entry *modules;
    size_t nmodules;
    struct task_entry *tasks;
    size_t ntasks;
    struct name_entry *names; /* sorted by strcmp() on name, for bsearch() */
    size_t nnames;
};

/* A name that a module about to be registered wants, checked against the registry and against the
 * other names of the same module. */
struct pending_name {
    const char *name;
    const char *task;  /* the task it belongs to */
    size_t task_index; /* that task's place in the module's list */
    bool alias;
};

struct pending {
    struct pending_name *v;
    size_t n;
};

/* Problems found while loading: one line each, and the code of the first. */
struct problems {
    struct cf_buf lines;
    int rc;
};

static void problem(struct problems *pb, int code, const char *fmt, ...) CF_PRINTF(3, 4);

static void problem(struct problems *pb, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        cf_buf_reserve(&pb->lines, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(pb->lines.data + pb->lines.len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        pb->lines.len += (size_t)n;
        cf_buf_putc(&pb->lines, '\n');
    }
    if (!pb->rc)
        pb->rc = code;
}

/* Hands the collected lines to the caller's buffer without the final newline; an empty buffer
 * tells the caller that there was nothing to report. */
static int problems_finish(struct problems *pb, char *err, size_t errlen)
{
    if (pb->lines.len && pb->lines.data[pb->lines.len - 1] == '\n')
        pb->lines.data[--pb->lines.len] = '\0';
    if (err && errlen)
        cf_strlcpy(err, pb->lines.data ? pb->lines.data : "", errlen);
    cf_buf_free(&pb->lines);
    return pb->rc;
}

static bool is_identifier(const char *s)
{
    if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    }
    return true;
}

/* ---- parameter definitions ---- */

/* The step between parameter definitions, or 0 when the array cannot be walked: the plug-in did
 * not set the size of its first element, set one smaller than ABI 1.0's, or one that would put
 * later elements out of alignment. */
static size_t param_stride(const struct cf_task_def *t)
{
    if (!t || !t->params)
        return 0;
    size_t stride = t->params->size;
    if (stride < PARAM_MIN_SIZE || stride % _Alignof(struct cf_param_def) != 0)
        return 0;
    return stride;
}

static const struct cf_param_def *param_raw(const struct cf_task_def *t, size_t stride, size_t i)
{
    return (const struct cf_param_def *)(const void *)((const char *)t->params + i * stride);
}

size_t cf_task_param_count(const struct cf_task_def *t)
{
    size_t stride = param_stride(t);
    if (!stride)
        return 0;
    size_t n = 0;
    while (n < MAX_PARAMS && param_raw(t, stride, n)->name)
        n++;
    return n;
}

const struct cf_param_def *cf_task_param_at(const struct cf_task_def *t, size_t i)
{
    if (i >= cf_task_param_count(t))
        return NULL;
    return param_raw(t, param_stride(t), i);
}

const struct cf_param_def *cf_task_param_find(const struct cf_task_def *t, const char *name)
{
    if (!name)
        return NULL;
    size_t n = cf_task_param_count(t);
    for (size_t i = 0; i < n; i++) {
        const struct cf_param_def *p = cf_task_param_at(t, i);
        if (strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

bool cf_task_declares_error(const struct cf_task_def *t, const char *code)
{
    if (!t || !code || !t->error_codes)
        return false;
    for (size_t i = 0; i < MAX_LIST && t->error_codes[i]; i++) {
        if (strcmp(t->error_codes[i], code) == 0)
            return true;
    }
    return false;
}

/* ---- parameter values ---- */

/* Appends `value` quoted, cut at SHOWN_VALUE_MAX bytes (never inside a UTF-8 sequence) and with
 * control characters replaced, so that a message stays one readable line. */
static void put_shown_value(struct cf_buf *b, const char *value)
{
    size_t len = strlen(value);
    size_t cut = len;
    if (cut > SHOWN_VALUE_MAX) {
        cut = SHOWN_VALUE_MAX;
        while (cut > 0 && ((unsigned char)value[cut] & 0xC0) == 0x80)
            cut--;
    }
    cf_buf_putc(b, '\'');
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)value[i];
        cf_buf_putc(b, c < 0x20 || c == 0x7F ? '?' : (char)c);
    }
    cf_buf_putc(b, '\'');
    if (cut < len)
        cf_buf_printf(b, " (cut, %zu bytes in all)", len);
}

static void put_list(struct cf_buf *b, const char *const *list)
{
    for (size_t i = 0; i < MAX_LIST && list[i]; i++) {
        if (i)
            cf_buf_puts(b, ", ");
        cf_buf_puts(b, *list[i] ? list[i] : "\"\"");
    }
}

/* A decimal integer as the manual promises it: optional sign, digits, nothing else, in range. */
static bool is_decimal_integer(const char *s)
{
    const char *d = s + (*s == '-' || *s == '+');
    if (!*d)
        return false;
    for (const char *c = d; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
    }
    int64_t unused;
    return cf_parse_i64(s, &unused) == 0;
}

int cf_param_check_value(const struct cf_param_def *p, const char *value, char *err, size_t errlen)
{
    if (!p || !p->name) {
        cf_errf(err, errlen, "no parameter definition to check a value against");
        return CF_EINVAL;
    }
    if (!value) {
        cf_errf(err, errlen, "parameter '%s' has no value", p->name);
        return CF_EINVAL;
    }

    const char *rule = NULL;
    switch (p->type) {
    case CF_PARAM_STRING:
    case CF_PARAM_TEXT:
        break;
    case CF_PARAM_BOOLEAN:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
            rule = "must be true or false";
        break;
    case CF_PARAM_INTEGER:
        if (!is_decimal_integer(value))
            rule = "must be a decimal integer that fits in 64 bits";
        break;
    case CF_PARAM_VARIABLE:
        if (!is_identifier(value))
            rule = "must be the name of a process variable (a letter or '_', then letters, "
                   "digits or '_')";
        break;
    default:
        cf_errf(err, errlen, "parameter '%s' has unknown type %d", p->name, (int)p->type);
        return CF_EINVAL;
    }

    bool listed = true;
    if (!rule && p->valid_values) {
        listed = false;
        for (size_t i = 0; i < MAX_LIST && p->valid_values[i]; i++) {
            if (strcmp(p->valid_values[i], value) == 0) {
                listed = true;
                break;
            }
        }
    }
    if (!rule && listed) {
        if (err && errlen)
            err[0] = '\0';
        return 0;
    }

    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_printf(&b, "parameter '%s' ", p->name);
    if (rule) {
        cf_buf_puts(&b, rule);
        if (p->valid_values) {
            cf_buf_puts(&b, " and one of: ");
            put_list(&b, p->valid_values);
        }
    } else {
        cf_buf_puts(&b, "must be one of: ");
        put_list(&b, p->valid_values);
    }
    /* The value helps whoever fixes the configuration, except when it is a secret: then even a
     * wrong value may be a real password with a typo, and it must not reach a log. */
    if (p->flags & CF_PARAM_SECRET) {
        cf_buf_puts(&b, " (the value given is secret and not shown)");
    } else {
        cf_buf_puts(&b, "; got ");
        put_shown_value(&b, value);
    }
    if (err && errlen)
        cf_strlcpy(err, b.data, errlen);
    cf_buf_free(&b);
    return CF_EINVAL;
}

/* ---- the registry ---- */

struct cf_registry *cf_registry_new(const struct cf_host *host)
{
    struct cf_registry *r = cf_xcalloc(1, sizeof(*r));
    r->host = host;
    return r;
}

void cf_registry_free(struct cf_registry *r)
{
    if (!r)
        return;
    /* Unload in reverse order of loading, as a program would unwind its constructors. */
    for (size_t i = r->nmodules; i-- > 0;) {
        if (r->modules[i].handle)
            dlclose(r->modules[i].handle);
        free(r->modules[i].origin);
    }
    free(r->modules);
    free(r->tasks);
    free(r->names);
    free(r);
}

static int name_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const struct name_entry *)elem)->name);
}

static const struct name_entry *find_name(const struct cf_registry *r, const char *name)
{
    if (!r->nnames)
        return NULL;
    return bsearch(name, r->names, r->nnames, sizeof(*r->names), name_cmp);
}

const struct cf_task_def *cf_registry_find(const struct cf_registry *r, const char *name,
                                           bool *is_alias)
{
    const struct name_entry *e = r && name ? find_name(r, name) : NULL;
    if (is_alias)
        *is_alias = e ? e->alias : false;
    return e ? r->tasks[e->task].t : NULL;
}

size_t cf_registry_count(const struct cf_registry *r)
{
    return r ? r->ntasks : 0;
}

const struct cf_task_def *cf_registry_at(const struct cf_registry *r, size_t i)
{
    return r && i < r->ntasks ? r->tasks[i].t : NULL;
}

const struct cf_module *cf_registry_module_of(const struct cf_registry *r,
                                              const struct cf_task_def *t, const char **origin)
{
    if (origin)
        *origin = NULL;
    if (!r || !t)
        return NULL;
    for (size_t i = 0; i < r->ntasks; i++) {
        if (r->tasks[i].t == t) {
            const struct module_entry *me = &r->modules[r->tasks[i].module];
            if (origin)
                *origin = me->origin;
            return me->m;
        }
    }
    return NULL;
}

/* ---- checking a module before it is registered ---- */

/* What a module is checked in: where it comes from and what to call it in messages. */
struct checking {
    const struct cf_registry *r;
    const char *origin;
    const char *module;
    struct pending names;
    struct problems *pb;
};

static void describe_name(struct cf_buf *b, const char *name, const char *task, bool alias)
{
    if (alias)
        cf_buf_printf(b, "alias '%s' of task '%s'", name, task);
    else
        cf_buf_printf(b, "task '%s'", name);
}

/* Refuses a name that the registry or this module already uses; otherwise reserves it. */
static void claim_name(struct checking *c, const char *name, const char *task, size_t task_index,
                       bool alias)
{
    struct cf_buf mine, theirs;
    cf_buf_init(&mine);
    cf_buf_init(&theirs);
    const struct name_entry *e = find_name(c->r, name);
    if (e) {
        const struct cf_task_def *t = c->r->tasks[e->task].t;
        const struct module_entry *me = &c->r->modules[c->r->tasks[e->task].module];
        describe_name(&theirs, e->name, t->name, e->alias);
        cf_buf_printf(&theirs, " of module %s from %s", me->m->name, me->origin);
    } else {
        for (size_t i = 0; i < c->names.n; i++) {
            const struct pending_name *pn = &c->names.v[i];
            if (strcmp(pn->name, name) == 0) {
                describe_name(&theirs, pn->name, pn->task, pn->alias);
                cf_buf_printf(&theirs, " of module %s from %s", c->module, c->origin);
                break;
            }
        }
    }
    if (theirs.len) {
        describe_name(&mine, name, task, alias);
        problem(c->pb, CF_EEXIST, "%s: %s of module %s is already registered: %s", c->origin,
                mine.data, c->module, theirs.data);
    } else {
        c->names.v = cf_xrealloc(c->names.v, (c->names.n + 1) * sizeof(*c->names.v));
        c->names.v[c->names.n++] = (struct pending_name){name, task, task_index, alias};
    }
    cf_buf_free(&mine);
    cf_buf_free(&theirs);
}

/* A terminating entry is all zero apart from its size. An entry without a name that still has a
 * type, flags, values or a description is a parameter whose name was forgotten; taking it for the
 * end would silently drop it and every parameter after it. */
static bool looks_like_terminator(const struct cf_param_def *p)
{
    return p->type == CF_PARAM_STRING && p->flags == 0 && !p->valid_values && !p->default_value &&
           !p->description;
}

static void check_params(struct checking *c, const struct cf_task_def *t)
{
    if (!t->params)
        return;
    const struct cf_param_def *first = t->params;
    /* `{0}` alone is how C spells an empty list; its size is 0 because nothing was set. */
    if (first->size == 0 && !first->name && looks_like_terminator(first))
        return;
    size_t stride = param_stride(t);
    if (!stride) {
        problem(c->pb, CF_EPLUGIN,
                "%s: module %s, task '%s': the first parameter definition gives its size as %zu "
                "bytes; it must be sizeof(struct cf_param_def), at least %zu bytes in plug-in ABI "
                "%d.%d",
                c->origin, c->module, t->name, first->size, (size_t)PARAM_MIN_SIZE,
                CF_PLUGIN_ABI_MAJOR, CF_PLUGIN_ABI_MINOR);
        return;
    }
    for (size_t i = 0;; i++) {
        if (i == MAX_PARAMS) {
            problem(c->pb, CF_EPLUGIN,
                    "%s: module %s, task '%s': more than %d parameters; is the entry with a NULL "
                    "name that ends the list missing?",
                    c->origin, c->module, t->name, MAX_PARAMS);
            return;
        }
        const struct cf_param_def *p = param_raw(t, stride, i);
        if (!p->name) {
            if (!looks_like_terminator(p))
                problem(c->pb, CF_EPLUGIN,
                        "%s: module %s, task '%s': parameter #%zu has no name (only the entry "
                        "that ends the list may have none, and it must be all zero)",
                        c->origin, c->module, t->name, i + 1);
            return;
        }
        if (!*p->name) {
            problem(c->pb, CF_EPLUGIN, "%s: module %s, task '%s': parameter #%zu has an empty name",
                    c->origin, c->module, t->name, i + 1);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(param_raw(t, stride, j)->name, p->name) == 0) {
                problem(c->pb, CF_EPLUGIN,
                        "%s: module %s, task '%s': parameter '%s' is defined twice (#%zu and "
                        "#%zu)",
                        c->origin, c->module, t->name, p->name, j + 1, i + 1);
                break;
            }
        }
        if ((unsigned)p->type > CF_PARAM_TEXT) {
            problem(c->pb, CF_EPLUGIN,
                    "%s: module %s, task '%s': parameter '%s' has type %d, which plug-in ABI %d.%d "
                    "does not define",
                    c->origin, c->module, t->name, p->name, (int)p->type, CF_PLUGIN_ABI_MAJOR,
                    CF_PLUGIN_ABI_MINOR);
            continue;
        }
        if (p->valid_values) {
            size_t n = 0;
            while (n < MAX_LIST && p->valid_values[n])
                n++;
            if (n == 0 || n == MAX_LIST) {
                problem(c->pb, CF_EPLUGIN,
                        "%s: module %s, task '%s': parameter '%s' has %s list of valid values",
                        c->origin, c->module, t->name, p->name, n ? "an unterminated" : "an empty");
                continue;
            }
        }
        /* A default that fails its own parameter's check would break every call that relies on
         * it; the plug-in author is the one to hear about it, at load time. */
        char why[512];
        if (p->default_value && cf_param_check_value(p, p->default_value, why, sizeof(why)) != 0)
            problem(c->pb, CF_EPLUGIN, "%s: module %s, task '%s': bad default value: %s", c->origin,
                    c->module, t->name, why);
    }
}

static void check_list(struct checking *c, const struct cf_task_def *t, const char *const *list,
                       const char *what)
{
    if (!list)
        return;
    for (size_t i = 0; list[i]; i++) {
        if (i == MAX_LIST) {
            problem(c->pb, CF_EPLUGIN,
                    "%s: module %s, task '%s': more than %d %s; is the NULL that ends the list "
                    "missing?",
                    c->origin, c->module, t->name, MAX_LIST, what);
            return;
        }
        if (!*list[i])
            problem(c->pb, CF_EPLUGIN, "%s: module %s, task '%s': %s #%zu is empty", c->origin,
                    c->module, t->name, what, i + 1);
    }
}

static void check_task(struct checking *c, size_t index, const struct cf_task_def *t)
{
    /* Read nothing beyond what `size` covers: even the name is only used when it is there. */
    if (t->size < TASK_MIN_SIZE) {
        const char *name = t->size >= END_OF(struct cf_task_def, name) ? t->name : NULL;
        problem(
            c->pb, CF_EPLUGIN,
            "%s: module %s, task #%zu%s%s%s: struct cf_task_def is %zu bytes, less than the %zu "
            "bytes of plug-in ABI %d.%d; set .size = sizeof(struct cf_task_def)",
            c->origin, c->module, index + 1, name ? " ('" : "", name ? name : "", name ? "')" : "",
            t->size, (size_t)TASK_MIN_SIZE, CF_PLUGIN_ABI_MAJOR, CF_PLUGIN_ABI_MINOR);
        return;
    }
    if (!t->name || !*t->name) {
        problem(c->pb, CF_EPLUGIN, "%s: module %s: task #%zu has no name", c->origin, c->module,
                index + 1);
        return;
    }
    /* BPMN calls a task as camunda:delegateExpression="${name}", so a name that is not an
     * identifier could never be called. */
    if (!is_identifier(t->name))
        problem(c->pb, CF_EPLUGIN,
                "%s: module %s: task name '%s' is not an identifier (a letter or '_', then "
                "letters, digits or '_'), so no BPMN could call it",
                c->origin, c->module, t->name);
    if (!t->execute)
        problem(c->pb, CF_EPLUGIN, "%s: module %s, task '%s': no execute function", c->origin,
                c->module, t->name);
    claim_name(c, t->name, t->name, index, false);

    check_list(c, t, t->aliases, "aliases");
    for (size_t i = 0; t->aliases && i < MAX_LIST && t->aliases[i]; i++) {
        const char *a = t->aliases[i];
        if (!*a)
            continue;
        if (!is_identifier(a))
            problem(c->pb, CF_EPLUGIN,
                    "%s: module %s, task '%s': alias '%s' is not an identifier, so no BPMN could "
                    "call it",
                    c->origin, c->module, t->name, a);
        claim_name(c, a, t->name, index, true);
    }
    check_list(c, t, t->error_codes, "BPMN error codes");
    check_params(c, t);
}

static bool module_registered(const struct cf_registry *r, const struct cf_module *m,
                              const void *handle, const char **origin)
{
    for (size_t i = 0; i < r->nmodules; i++) {
        if (r->modules[i].m == m || (handle && r->modules[i].handle == handle)) {
            *origin = r->modules[i].origin;
            return true;
        }
    }
    return false;
}

static void insert_name(struct cf_registry *r, const char *name, size_t task, bool alias)
{
    size_t lo = 0, hi = r->nnames;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->names[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    r->names = cf_xrealloc(r->names, (r->nnames + 1) * sizeof(*r->names));
    memmove(&r->names[lo + 1], &r->names[lo], (r->nnames - lo) * sizeof(*r->names));
    r->names[lo] = (struct name_entry){name, task, alias};
    r->nnames++;
}

/* Checks `m` completely and registers it whole, or reports every problem and registers nothing.
 * On success the registry owns `handle`; on failure the caller still does. */
static int add_module(struct cf_registry *r, const struct cf_module *m, const char *origin,
                      void *handle, struct problems *pb)
{
    int rc_before = pb->rc;
    pb->rc = 0;
    const char *other;

    if (!m) {
        problem(pb, CF_EPLUGIN,
                "%s: %s returned no module (the plug-in refused to load; its log says why)", origin,
                CF_PLUGIN_INIT_SYMBOL);
    } else if (m->size < END_OF(struct cf_module, abi_major)) {
        problem(pb, CF_EPLUGIN,
                "%s: struct cf_module is %zu bytes, too small to hold an ABI version; set .size = "
                "sizeof(struct cf_module)",
                origin, m->size);
    } else if (m->abi_major != CF_PLUGIN_ABI_MAJOR) {
        /* Past the major version nothing else is known about the layout, not even the name. */
        if (m->size >= END_OF(struct cf_module, abi_minor))
            problem(pb, CF_EABI,
                    "%s: built for plug-in ABI %u.%u, but this certflow needs ABI %d.x (it "
                    "implements %d.%d); rebuild the plug-in against this certflow's plugin.h",
                    origin, (unsigned)m->abi_major, (unsigned)m->abi_minor, CF_PLUGIN_ABI_MAJOR,
                    CF_PLUGIN_ABI_MAJOR, CF_PLUGIN_ABI_MINOR);
        else
            problem(pb, CF_EABI,
                    "%s: built for plug-in ABI %u, but this certflow needs ABI %d.x (it implements "
                    "%d.%d); rebuild the plug-in against this certflow's plugin.h",
                    origin, (unsigned)m->abi_major, CF_PLUGIN_ABI_MAJOR, CF_PLUGIN_ABI_MAJOR,
                    CF_PLUGIN_ABI_MINOR);
    } else if (m->size < MODULE_MIN_SIZE) {
        problem(pb, CF_EPLUGIN,
                "%s: struct cf_module is %zu bytes, less than the %zu bytes of plug-in ABI %d.%d; "
                "set .size = sizeof(struct cf_module)",
                origin, m->size, (size_t)MODULE_MIN_SIZE, CF_PLUGIN_ABI_MAJOR, CF_PLUGIN_ABI_MINOR);
    } else if (!m->name || !*m->name) {
        problem(pb, CF_EPLUGIN, "%s: the module has no name", origin);
    } else if (module_registered(r, m, handle, &other)) {
        problem(pb, CF_EEXIST, "%s: module %s is already registered from %s", origin, m->name,
                other);
    } else {
        struct checking c = {r, origin, m->name, {NULL, 0}, pb};
        size_t n = 0;
        for (; m->tasks && m->tasks[n]; n++) {
            if (n == MAX_TASKS) {
                problem(pb, CF_EPLUGIN,
                        "%s: module %s has more than %d tasks; is the NULL that ends the list "
                        "missing?",
                        origin, m->name, MAX_TASKS);
                break;
            }
            check_task(&c, n, m->tasks[n]);
        }
        if (!pb->rc) {
            size_t mi = r->nmodules;
            r->modules = cf_xrealloc(r->modules, (mi + 1) * sizeof(*r->modules));
            r->modules[mi] = (struct module_entry){m, handle, cf_xstrdup(origin)};
            r->nmodules++;
            r->tasks = cf_xrealloc(r->tasks, (r->ntasks + n) * sizeof(*r->tasks));
            size_t first_task = r->ntasks;
            for (size_t i = 0; i < n; i++)
                r->tasks[r->ntasks++] = (struct task_entry){m->tasks[i], mi};
            for (size_t i = 0; i < c.names.n; i++)
                insert_name(r, c.names.v[i].name, first_task + c.names.v[i].task_index,
                            c.names.v[i].alias);
        }
        free(c.names.v);
    }

    int rc = pb->rc;
    if (rc_before)
        pb->rc = rc_before;
    return rc;
}

int cf_registry_add_module(struct cf_registry *r, const struct cf_module *m, const char *origin,
                           char *err, size_t errlen)
{
    struct problems pb = {{NULL, 0, 0}, 0};
    if (!r)
        problem(&pb, CF_EINVAL, "no registry");
    else
        add_module(r, m, origin ? origin : "(built in)", NULL, &pb);
    return problems_finish(&pb, err, errlen);
}

/* dlerror() usually starts with the file name, which our messages already give first. */
static const char *dl_reason(const char *path)
{
    const char *e = dlerror();
    if (!e)
        return "unknown dynamic loader error";
    size_t n = strlen(path);
    if (strncmp(e, path, n) == 0 && e[n] == ':' && e[n + 1] == ' ')
        return e + n + 2;
    return e;
}

static int load_file(struct cf_registry *r, const char *path, struct problems *pb)
{
    /* Without a slash dlopen() would search the system library path; a plug-in path is a file. */
    char *local = strchr(path, '/') ? NULL : cf_xasprintf("./%s", path);
    const char *open_path = local ? local : path;
    int rc;

    dlerror();
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    const char *other;
    if (!h) {
        problem(pb, CF_EPLUGIN, "%s: cannot load: %s", path, dl_reason(open_path));
        rc = CF_EPLUGIN;
    } else if (module_registered(r, NULL, h, &other)) {
        /* The same library opened twice (say through a symlink) must not be initialized twice. */
        problem(pb, CF_EEXIST, "%s: this library is already loaded from %s", path, other);
        rc = CF_EEXIST;
        dlclose(h);
    } else {
        void *sym = dlsym(h, CF_PLUGIN_INIT_SYMBOL);
        if (!sym) {
            problem(pb, CF_EPLUGIN,
                    "%s: not a certflow plug-in: it exports no %s() (was it built without "
                    "CF_PLUGIN_EXPORT?)",
                    path, CF_PLUGIN_INIT_SYMBOL);
            rc = CF_EPLUGIN;
        } else {
            /* ISO C has no conversion from object to function pointers; POSIX guarantees that
             * the bits are the same, so copy them. */
            cf_plugin_init_fn init;
            _Static_assert(sizeof(init) == sizeof(sym), "function and object pointers differ");
            memcpy(&init, &sym, sizeof(init));
            rc = add_module(r, init(r->host), path, h, pb);
        }
        if (rc)
            dlclose(h);
    }
    free(local);
    return rc;
}

int cf_registry_load_file(struct cf_registry *r, const char *path, char *err, size_t errlen)
{
    struct problems pb = {{NULL, 0, 0}, 0};
    if (!r || !path)
        problem(&pb, CF_EINVAL, "no registry or no path");
    else
        load_file(r, path, &pb);
    return problems_finish(&pb, err, errlen);
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cf_registry_load_dir(struct cf_registry *r, const char *dir, char *err, size_t errlen)
{
    struct problems pb = {{NULL, 0, 0}, 0};
    if (!r || !dir) {
        problem(&pb, CF_EINVAL, "no registry or no folder");
        return problems_finish(&pb, err, errlen);
    }
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        problem(&pb, e == ENOENT ? CF_ENOENT : CF_EIO, "%s: cannot open plug-in folder: %s", dir,
                strerror(e));
        return problems_finish(&pb, err, errlen);
    }
    char **files = NULL;
    size_t nfiles = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > 3 && strcmp(de->d_name + len - 3, ".so") == 0) {
            files = cf_xrealloc(files, (nfiles + 1) * sizeof(*files));
            files[nfiles++] = cf_xstrdup(de->d_name);
        }
        errno = 0;
    }
    if (errno)
        problem(&pb, CF_EIO, "%s: cannot read plug-in folder: %s", dir, strerror(errno));
    closedir(d);

    /* strcmp(), not the locale's collation, so the order is the same on every machine. */
    if (nfiles)
        qsort(files, nfiles, sizeof(*files), str_ptr_cmp);
    size_t dlen = strlen(dir);
    bool slash = dlen > 0 && dir[dlen - 1] == '/';
    for (size_t i = 0; i < nfiles; i++) {
        char *path = cf_xasprintf("%s%s%s", dir, slash ? "" : "/", files[i]);
        struct stat st;
        if (stat(path, &st) != 0)
            problem(&pb, CF_EIO, "%s: cannot load: %s", path, strerror(errno));
        else if (S_ISREG(st.st_mode))
            load_file(r, path, &pb);
        free(path);
        free(files[i]);
    }
    free(files);
    return problems_finish(&pb, err, errlen);
}

/* ---- the manual ---- */

static const char *type_name(enum cf_param_type t)
{
    switch (t) {
    case CF_PARAM_STRING:
        return "string";
    case CF_PARAM_BOOLEAN:
        return "boolean";
    case CF_PARAM_INTEGER:
        return "integer";
    case CF_PARAM_VARIABLE:
        return "variable name";
    case CF_PARAM_TEXT:
        return "text";
    }
    return "unknown";
}

/* Appends `text` as a paragraph indented by `indent` columns and wrapped at MANUAL_WIDTH; the
 * first line starts with `lead` (which counts toward the width). A word longer than a line gets a
 * line of its own rather than being split. */
static void put_wrapped(struct cf_buf *b, int indent, const char *lead, const char *text)
{
    size_t col = (size_t)indent + strlen(lead);
    cf_buf_printf(b, "%*s%s", indent, "", lead);
    bool first_on_line = true; /* the lead, when there is one, ends with its own space */
    const char *s = text;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == '\n')
            s++;
        if (!*s)
            break;
        size_t w = strcspn(s, " \t\n");
        if (!first_on_line && col + 1 + w > MANUAL_WIDTH) {
            cf_buf_printf(b, "\n%*s", indent, "");
            col = (size_t)indent;
            first_on_line = true;
        }
        if (!first_on_line) {
            cf_buf_putc(b, ' ');
            col++;
        }
        cf_buf_append(b, s, w);
        col += w;
        first_on_line = false;
        s += w;
    }
    cf_buf_putc(b, '\n');
}

static void put_list_line(struct cf_buf *b, int indent, const char *lead, const char *const *list)
{
    struct cf_buf items;
    cf_buf_init(&items);
    put_list(&items, list);
    put_wrapped(b, indent, lead, items.data);
    cf_buf_free(&items);
}

static void manual_param(struct cf_buf *b, const struct cf_param_def *p)
{
    cf_buf_printf(b, "        %s (%s, %s%s)\n", p->name, type_name(p->type),
                  p->flags & CF_PARAM_MANDATORY ? "mandatory" : "optional",
                  p->flags & CF_PARAM_SECRET ? ", secret" : "");
    static const char *const booleans[] = {"true", "false", NULL};
    if (p->valid_values)
        put_list_line(b, 12, "valid values: ", p->valid_values);
    else if (p->type == CF_PARAM_BOOLEAN)
        put_list_line(b, 12, "valid values: ", booleans);
    if (p->default_value && (p->flags & CF_PARAM_SECRET))
        cf_buf_puts(b, "            default: (set, but secret and not shown)\n");
    else if (p->default_value)
        put_wrapped(b, 12, "default: ", *p->default_value ? p->default_value : "\"\"");
    put_wrapped(b, 12, "", p->description ? p->description : "(no description)");
}

static void manual_task(struct cf_buf *b, const struct cf_module *m, const char *origin,
                        const struct cf_task_def *t)
{
    cf_buf_printf(b, "%s\n", t->name);
    put_wrapped(b, 4, "", t->summary ? t->summary : "(no summary)");
    cf_buf_putc(b, '\n');
    cf_buf_printf(b, "    module: %s %s (%s)\n", m->name, m->version ? m->version : "(no version)",
                  origin);
    if (t->aliases && t->aliases[0])
        put_list_line(b, 4, "aliases (deprecated): ", t->aliases);
    cf_buf_putc(b, '\n');

    size_t n = cf_task_param_count(t);
    if (!n) {
        cf_buf_puts(b, "    parameters: none\n");
    } else {
        cf_buf_puts(b, "    parameters:\n");
        for (size_t i = 0; i < n; i++) {
            if (i)
                cf_buf_putc(b, '\n');
            manual_param(b, cf_task_param_at(t, i));
        }
    }
    if (t->flags & CF_TASK_EXTRA_PARAMS)
        put_wrapped(b, 4, "", "It also takes parameters beyond these, which it passes on.");
    cf_buf_putc(b, '\n');

    if (t->error_codes && t->error_codes[0])
        put_list_line(b, 4, "BPMN errors: ", t->error_codes);
    else
        cf_buf_puts(b, "    BPMN errors: none\n");
}

void cf_registry_manual(const struct cf_registry *r, struct cf_buf *out)
{
    if (!r || !r->ntasks) {
        cf_buf_puts(out, "No tasks are registered.\n");
        return;
    }
    for (size_t i = 0; i < r->ntasks; i++) {
        if (i)
            cf_buf_putc(out, '\n');
        const struct module_entry *me = &r->modules[r->tasks[i].module];
        manual_task(out, me->m, me->origin, r->tasks[i].t);
    }
}
