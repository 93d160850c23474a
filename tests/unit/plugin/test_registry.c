/*
 * Tests of the plug-in registry (engine/plugin/registry.c): loading the real demo and noop
 * plug-ins, keeping going past bad libraries in a folder, refusing duplicate names, foreign ABI
 * versions and definitions too small for the fields the engine reads, stepping parameter arrays
 * by the plug-in's own struct size, checking parameter values without ever showing a secret, and
 * the manual. The tasks' behaviour when called is tested in test_demo_plugins.c.
 */
#define _GNU_SOURCE /* dlinfo(), to find where the system's libm lives */

#include <dlfcn.h>
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "plugin/registry.h"

static struct cf_host host = {.size = sizeof(struct cf_host)};

static size_t count_lines(const char *s)
{
    if (!*s)
        return 0;
    size_t n = 1;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void dummy_execute(struct cf_call *call)
{
    (void)call;
}

/* Where the dynamic loader finds libm: a real shared object that is no certflow plug-in. */
static char *libm_path(void)
{
    void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    struct link_map *lm = NULL;
    assert_int_equal(dlinfo(h, RTLD_DI_LINKMAP, &lm), 0);
    char *path = cf_xstrdup(lm->l_name);
    dlclose(h);
    assert_true(path[0] == '/');
    return path;
}

static void copy_file(const char *from, const char *to)
{
    uint8_t *data;
    size_t len;
    char err[256];
    assert_int_equal(cf_read_file(from, 64u << 20, &data, &len, err, sizeof(err)), 0);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(data);
}

/* ---- the real plug-ins ---- */

static void test_load_dir_finds_demo_and_noop(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    char err[4096];
    /* Other plug-ins may share the folder; whatever they do, ours must load cleanly. */
    cf_registry_load_dir(r, CF_PLUGIN_DIR, err, sizeof(err));
    assert_null(strstr(err, "/demo.so"));
    assert_null(strstr(err, "/noop.so"));

    bool alias = true;
    const struct cf_task_def *set = cf_registry_find(r, "setVariablesTask", &alias);
    assert_non_null(set);
    assert_false(alias);
    const struct cf_task_def *thr = cf_registry_find(r, "throwErrorTask", &alias);
    assert_non_null(thr);
    assert_false(alias);
    assert_ptr_equal(cf_registry_find(r, "throwBpmnErrorTask", &alias), thr);
    assert_true(alias);
    const struct cf_task_def *noop = cf_registry_find(r, "noopTask", NULL);
    assert_non_null(noop);
    assert_null(cf_registry_find(r, "noSuchTask", &alias));
    assert_false(alias);
    assert_null(cf_registry_find(r, "throwerrortask", NULL)); /* names are case-sensitive */

    const char *origin = NULL;
    const struct cf_module *m = cf_registry_module_of(r, thr, &origin);
    assert_non_null(m);
    assert_string_equal(m->name, "demo");
    assert_true(ends_with(origin, "/demo.so"));
    m = cf_registry_module_of(r, noop, &origin);
    assert_string_equal(m->name, "noop");
    assert_true(ends_with(origin, "/noop.so"));

    /* Files load in name order, so demo's tasks come before noop's whatever readdir says. */
    size_t i_set = SIZE_MAX, i_thr = SIZE_MAX, i_noop = SIZE_MAX;
    for (size_t i = 0; i < cf_registry_count(r); i++) {
        const struct cf_task_def *t = cf_registry_at(r, i);
        if (t == set)
            i_set = i;
        else if (t == thr)
            i_thr = i;
        else if (t == noop)
            i_noop = i;
    }
    assert_true(i_set < i_thr);
    assert_true(i_thr < i_noop);
    assert_null(cf_registry_at(r, cf_registry_count(r)));

    assert_int_equal(cf_task_param_count(thr), 4);
    const struct cf_param_def *secret = cf_task_param_find(thr, "secretToken");
    assert_non_null(secret);
    assert_true(secret->flags & CF_PARAM_SECRET);
    assert_true(cf_task_param_find(thr, "mode")->flags & CF_PARAM_MANDATORY);
    assert_null(cf_task_param_find(thr, "nope"));
    assert_true(cf_task_declares_error(thr, "CaRequestFailed"));
    assert_true(cf_task_declares_error(thr, "DemoError"));
    assert_false(cf_task_declares_error(thr, "caRequestFailed"));
    assert_false(cf_task_declares_error(set, "DemoError"));
    assert_int_equal(cf_task_param_count(noop), 0);
    assert_null(cf_task_param_at(noop, 0));
    assert_string_equal(cf_task_param_at(set, 1)->name, "delayMs");

    cf_registry_free(r);
}

static void test_load_file_errors(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    char err[1024];

    assert_int_equal(cf_registry_load_file(r, "/nonexistent/x.so", err, sizeof(err)), CF_EPLUGIN);
    assert_non_null(strstr(err, "/nonexistent/x.so: cannot load"));

    char *libm = libm_path();
    assert_int_equal(cf_registry_load_file(r, libm, err, sizeof(err)), CF_EPLUGIN);
    assert_non_null(strstr(err, libm));
    assert_non_null(strstr(err, "not a certflow plug-in"));
    assert_non_null(strstr(err, "cf_plugin_init"));
    free(libm);

    /* A library opened twice is the same library: it must not be initialized again. */
    assert_int_equal(cf_registry_load_file(r, CF_PLUGIN_DIR "/noop.so", err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(cf_registry_load_file(r, CF_PLUGIN_DIR "/noop.so", err, sizeof(err)),
                     CF_EEXIST);
    assert_non_null(strstr(err, "already loaded"));
    assert_int_equal(cf_registry_count(r), 1);

    assert_int_equal(cf_registry_load_dir(r, "/nonexistent-folder", err, sizeof(err)), CF_ENOENT);
    assert_non_null(strstr(err, "/nonexistent-folder"));

    cf_registry_free(r);
    cf_registry_free(NULL);
}

/* A folder with a good plug-in, a second copy of it, a file that is no library, a library that is
 * no plug-in, and things that are not plug-ins at all: the good one loads, every bad one is named
 * on its own line, and nothing of the refused copy is registered. */
static void test_load_dir_keeps_going(void **state)
{
    (void)state;
    char dir[] = "/tmp/cf-test-registry-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *a = cf_xasprintf("%s/a.so", dir), *b = cf_xasprintf("%s/b.so", dir);
    char *c = cf_xasprintf("%s/c.so", dir), *d = cf_xasprintf("%s/d.so", dir);
    char *txt = cf_xasprintf("%s/e.txt", dir), *sub = cf_xasprintf("%s/f.so", dir);
    /* Created in reverse so that readdir order is unlikely to be name order. */
    char *libm = libm_path();
    assert_int_equal(symlink(libm, d), 0);
    FILE *f = fopen(c, "w");
    assert_non_null(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    copy_file(CF_PLUGIN_DIR "/demo.so", b);
    copy_file(CF_PLUGIN_DIR "/demo.so", a);
    copy_file(CF_PLUGIN_DIR "/demo.so", txt);
    assert_int_equal(mkdir(sub, 0700), 0);

    struct cf_registry *r = cf_registry_new(&host);
    char err[4096];
    assert_int_equal(cf_registry_load_dir(r, dir, err, sizeof(err)), CF_EEXIST);

    /* b.so clashes three times (two tasks and an alias), c.so and d.so once each. */
    assert_int_equal(count_lines(err), 5);
    char *want = cf_xasprintf("%s: task 'setVariablesTask' of module demo is already registered: "
                              "task 'setVariablesTask' of module demo from %s",
                              b, a);
    assert_non_null(strstr(err, want));
    free(want);
    want = cf_xasprintf("%s: alias 'throwBpmnErrorTask' of task 'throwErrorTask' of module demo is "
                        "already registered: alias 'throwBpmnErrorTask' of task 'throwErrorTask' "
                        "of module demo from %s",
                        b, a);
    assert_non_null(strstr(err, want));
    free(want);
    want = cf_xasprintf("%s: cannot load", c);
    assert_non_null(strstr(err, want));
    free(want);
    want = cf_xasprintf("%s: not a certflow plug-in", d);
    assert_non_null(strstr(err, want));
    free(want);
    assert_null(strstr(err, "e.txt"));
    assert_null(strstr(err, "f.so:"));
    /* Lines come in file order. */
    assert_true(strstr(err, b) < strstr(err, c));
    assert_true(strstr(err, c) < strstr(err, d));

    assert_int_equal(cf_registry_count(r), 2);
    const char *origin;
    cf_registry_module_of(r, cf_registry_find(r, "throwBpmnErrorTask", NULL), &origin);
    assert_string_equal(origin, a);

    /* A buffer too small for every line still ends in a terminated string. */
    struct cf_registry *r2 = cf_registry_new(&host);
    char tiny[16];
    assert_int_equal(cf_registry_load_dir(r2, dir, tiny, sizeof(tiny)), CF_EEXIST);
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    cf_registry_free(r2);
    cf_registry_free(r);

    unlink(a);
    unlink(b);
    unlink(c);
    unlink(d);
    unlink(txt);
    rmdir(sub);
    assert_int_equal(rmdir(dir), 0);
    free(a);
    free(b);
    free(c);
    free(d);
    free(txt);
    free(sub);
    free(libm);
}

/* ---- modules defined here ---- */

static const char *const alpha_aliases[] = {"alphaOld", NULL};

static const struct cf_task_def alpha_task = {
    .size = sizeof(struct cf_task_def),
    .name = "alpha",
    .aliases = alpha_aliases,
    .summary = "Alpha.",
    .execute = dummy_execute,
};

static const struct cf_task_def *const module_a_tasks[] = {&alpha_task, NULL};

static const struct cf_module module_a = {
    .size = sizeof(struct cf_module),
    .abi_major = CF_PLUGIN_ABI_MAJOR,
    .abi_minor = CF_PLUGIN_ABI_MINOR,
    .name = "moda",
    .version = "1.0",
    .tasks = module_a_tasks,
};

static void test_duplicates_refused(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    char err[2048];
    assert_int_equal(cf_registry_add_module(r, &module_a, "test-a", err, sizeof(err)), 0);
    assert_string_equal(err, "");

    /* Module b brings a new task, a task named like a's alias, and an alias named like a's task.
     * It is refused whole: its new task must not be registered either. */
    static const char *const gamma_aliases[] = {"alpha", NULL};
    static const struct cf_task_def beta = {
        .size = sizeof(struct cf_task_def), .name = "beta", .execute = dummy_execute};
    static const struct cf_task_def alpha_old = {
        .size = sizeof(struct cf_task_def), .name = "alphaOld", .execute = dummy_execute};
    static const struct cf_task_def gamma = {.size = sizeof(struct cf_task_def),
                                             .name = "gamma",
                                             .aliases = gamma_aliases,
                                             .execute = dummy_execute};
    static const struct cf_task_def *const b_tasks[] = {&beta, &alpha_old, &gamma, NULL};
    struct cf_module b = module_a;
    b.name = "modb";
    b.tasks = b_tasks;
    assert_int_equal(cf_registry_add_module(r, &b, "test-b", err, sizeof(err)), CF_EEXIST);
    assert_int_equal(count_lines(err), 2);
    assert_non_null(strstr(err, "test-b: task 'alphaOld' of module modb is already registered: "
                                "alias 'alphaOld' of task 'alpha' of module moda from test-a"));
    assert_non_null(strstr(err, "test-b: alias 'alpha' of task 'gamma' of module modb is already "
                                "registered: task 'alpha' of module moda from test-a"));
    assert_null(cf_registry_find(r, "beta", NULL));
    assert_null(cf_registry_find(r, "gamma", NULL));
    assert_int_equal(cf_registry_count(r), 1);

    /* Clashes inside one module count too. */
    static const char *const self_aliases[] = {"delta", NULL};
    static const struct cf_task_def delta = {.size = sizeof(struct cf_task_def),
                                             .name = "delta",
                                             .aliases = self_aliases,
                                             .execute = dummy_execute};
    static const struct cf_task_def *const c_tasks[] = {&delta, NULL};
    struct cf_module c = module_a;
    c.name = "modc";
    c.tasks = c_tasks;
    assert_int_equal(cf_registry_add_module(r, &c, "test-c", err, sizeof(err)), CF_EEXIST);
    assert_non_null(strstr(err, "alias 'delta' of task 'delta'"));
    assert_null(cf_registry_find(r, "delta", NULL));

    /* The same module twice. */
    assert_int_equal(cf_registry_add_module(r, &module_a, "test-a2", err, sizeof(err)), CF_EEXIST);
    assert_non_null(strstr(err, "test-a2: module moda is already registered from test-a"));

    /* With no clash left, b's own tasks register. */
    static const struct cf_task_def *const b2_tasks[] = {&beta, NULL};
    b.tasks = b2_tasks;
    assert_int_equal(cf_registry_add_module(r, &b, "test-b", err, sizeof(err)), 0);
    assert_ptr_equal(cf_registry_find(r, "beta", NULL), &beta);
    bool alias;
    assert_ptr_equal(cf_registry_find(r, "alphaOld", &alias), &alpha_task);
    assert_true(alias);
    cf_registry_free(r);
}

static void test_abi_versions(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    char err[1024];

    struct cf_module m = module_a;
    m.abi_major = CF_PLUGIN_ABI_MAJOR + 1;
    m.abi_minor = 3;
    assert_int_equal(cf_registry_add_module(r, &m, "future.so", err, sizeof(err)), CF_EABI);
    char *want = cf_xasprintf("future.so: built for plug-in ABI %d.3, but this certflow needs ABI "
                              "%d.x (it implements %d.%d)",
                              CF_PLUGIN_ABI_MAJOR + 1, CF_PLUGIN_ABI_MAJOR, CF_PLUGIN_ABI_MAJOR,
                              CF_PLUGIN_ABI_MINOR);
    assert_non_null(strstr(err, want));
    free(want);
    m.abi_major = 0;
    assert_int_equal(cf_registry_add_module(r, &m, "old.so", err, sizeof(err)), CF_EABI);
    assert_non_null(strstr(err, "old.so: built for plug-in ABI 0.3"));
    assert_int_equal(cf_registry_count(r), 0);

    assert_int_equal(cf_registry_add_module(r, NULL, "null.so", err, sizeof(err)), CF_EPLUGIN);
    assert_non_null(strstr(err, "null.so: cf_plugin_init returned no module"));

    /* A module from a later minor version has bigger structs with fields we do not know; the
     * registry reads what it knows and accepts the rest. */
    struct future_task {
        struct cf_task_def base;
        void (*later)(void);
        char pad[40];
    };
    struct future_module {
        struct cf_module base;
        const char *later;
    };
    static struct future_task ft = {
        .base = {.size = sizeof(struct future_task), .name = "later", .execute = dummy_execute}};
    static const struct cf_task_def *const ft_tasks[] = {&ft.base, NULL};
    static struct future_module fm = {.base = {.size = sizeof(struct future_module),
                                               .abi_major = CF_PLUGIN_ABI_MAJOR,
                                               .abi_minor = CF_PLUGIN_ABI_MINOR + 7,
                                               .name = "futuremod",
                                               .tasks = ft_tasks},
                                      .later = "x"};
    assert_int_equal(cf_registry_add_module(r, &fm.base, "later.so", err, sizeof(err)), 0);
    assert_ptr_equal(cf_registry_find(r, "later", NULL), &ft.base);
    cf_registry_free(r);
}

/* The structs are allocated at exactly their claimed size, so AddressSanitizer fails this test if
 * the registry reads a byte that `size` does not cover. Fields are written with memcpy() because
 * the compiler rightly objects to member access through a struct that does not fit. */
static void *small_struct(size_t size)
{
    void *p = cf_xmalloc(size);
    memcpy(p, &size, sizeof(size));
    return p;
}

static void put_field(void *p, size_t offset, const void *value, size_t n)
{
    memcpy((char *)p + offset, value, n);
}

static void test_structs_too_small(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    char err[1024];
    uint32_t major = CF_PLUGIN_ABI_MAJOR, minor = CF_PLUGIN_ABI_MINOR;

    void *m = small_struct(offsetof(struct cf_module, name));
    put_field(m, offsetof(struct cf_module, abi_major), &major, sizeof(major));
    put_field(m, offsetof(struct cf_module, abi_minor), &minor, sizeof(minor));
    assert_int_equal(cf_registry_add_module(r, m, "small-module.so", err, sizeof(err)), CF_EPLUGIN);
    assert_non_null(strstr(err, "small-module.so: struct cf_module is 16 bytes, less than"));
    free(m);

    m = small_struct(sizeof(size_t));
    assert_int_equal(cf_registry_add_module(r, m, "tiny-module.so", err, sizeof(err)), CF_EPLUGIN);
    assert_non_null(strstr(err, "too small to hold an ABI version"));
    free(m);

    /* A task holding only its size, and one that ends just after its name. */
    void *t1 = small_struct(sizeof(size_t));
    void *t2 = small_struct(offsetof(struct cf_task_def, aliases));
    const char *name = "shortTask";
    put_field(t2, offsetof(struct cf_task_def, name), &name, sizeof(name));
    const struct cf_task_def *tasks[] = {t1, t2, NULL};
    struct cf_module mod = module_a;
    mod.tasks = tasks;
    assert_int_equal(cf_registry_add_module(r, &mod, "small-task.so", err, sizeof(err)),
                     CF_EPLUGIN);
    assert_int_equal(count_lines(err), 2);
    assert_non_null(strstr(err, "small-task.so: module moda, task #1: struct cf_task_def is 8 "
                                "bytes"));
    assert_non_null(strstr(err, "task #2 ('shortTask'): struct cf_task_def is 16 bytes"));
    assert_int_equal(cf_registry_count(r), 0);
    free(t1);
    free(t2);
    cf_registry_free(r);
}

static void test_bad_task_definitions(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    char err[4096];
    static const struct cf_task_def unnamed = {.size = sizeof(struct cf_task_def),
                                               .execute = dummy_execute};
    static const struct cf_task_def lazy = {.size = sizeof(struct cf_task_def), .name = "lazy"};
    static const struct cf_task_def spaced = {
        .size = sizeof(struct cf_task_def), .name = "has space", .execute = dummy_execute};
    static const struct cf_task_def good = {
        .size = sizeof(struct cf_task_def), .name = "good", .execute = dummy_execute};
    static const struct cf_task_def *const tasks[] = {&unnamed, &lazy, &spaced, &good, NULL};
    struct cf_module m = module_a;
    m.tasks = tasks;
    assert_int_equal(cf_registry_add_module(r, &m, "bad.so", err, sizeof(err)), CF_EPLUGIN);
    assert_int_equal(count_lines(err), 3);
    assert_non_null(strstr(err, "bad.so: module moda: task #1 has no name"));
    assert_non_null(strstr(err, "bad.so: module moda, task 'lazy': no execute function"));
    assert_non_null(strstr(err, "task name 'has space' is not an identifier"));
    assert_null(cf_registry_find(r, "good", NULL));

    struct cf_module unnamed_module = module_a;
    unnamed_module.name = NULL;
    assert_int_equal(cf_registry_add_module(r, &unnamed_module, "anon.so", err, sizeof(err)),
                     CF_EPLUGIN);
    assert_non_null(strstr(err, "anon.so: the module has no name"));
    cf_registry_free(r);
}

static void test_bad_parameter_definitions(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    char err[4096];
    static const char *const empty[] = {NULL};
    static const struct cf_param_def params[] = {
        {.size = sizeof(struct cf_param_def), .name = "p", .description = "First."},
        {.size = sizeof(struct cf_param_def), .name = "q", .type = CF_PARAM_INTEGER},
        {.size = sizeof(struct cf_param_def), .name = "p", .description = "Again."},
        {.size = sizeof(struct cf_param_def),
         .name = "flag",
         .type = CF_PARAM_BOOLEAN,
         .default_value = "yes"},
        {.size = sizeof(struct cf_param_def), .name = "odd", .type = (enum cf_param_type)9},
        {.size = sizeof(struct cf_param_def), .name = "none", .valid_values = empty},
        {.size = sizeof(struct cf_param_def), .name = ""},
        /* A forgotten name: not the end of the list, since it has a description. */
        {.size = sizeof(struct cf_param_def), .description = "Lost."},
        {.size = sizeof(struct cf_param_def), .name = "after"},
        {.size = 0},
    };
    static const struct cf_task_def t = {.size = sizeof(struct cf_task_def),
                                         .name = "params",
                                         .params = params,
                                         .execute = dummy_execute};
    static const struct cf_task_def *const tasks[] = {&t, NULL};
    struct cf_module m = module_a;
    m.tasks = tasks;
    assert_int_equal(cf_registry_add_module(r, &m, "p.so", err, sizeof(err)), CF_EPLUGIN);
    assert_int_equal(count_lines(err), 6);
    assert_non_null(strstr(err, "p.so: module moda, task 'params': parameter 'p' is defined twice "
                                "(#1 and #3)"));
    assert_non_null(strstr(err, "bad default value: parameter 'flag' must be true or false"));
    assert_non_null(strstr(err, "parameter 'odd' has type 9"));
    assert_non_null(strstr(err, "parameter 'none' has an empty list of valid values"));
    assert_non_null(strstr(err, "parameter #7 has an empty name"));
    assert_non_null(strstr(err, "parameter #8 has no name"));

    /* A first element whose size was never set. */
    static const struct cf_param_def unsized[] = {{.name = "x"}, {.name = NULL}};
    static const struct cf_task_def t2 = {.size = sizeof(struct cf_task_def),
                                          .name = "unsized",
                                          .params = unsized,
                                          .execute = dummy_execute};
    static const struct cf_task_def *const tasks2[] = {&t2, NULL};
    m.tasks = tasks2;
    assert_int_equal(cf_registry_add_module(r, &m, "u.so", err, sizeof(err)), CF_EPLUGIN);
    assert_non_null(strstr(err, "the first parameter definition gives its size as 0 bytes"));
    assert_int_equal(cf_task_param_count(&t2), 0);

    /* `{0}` alone is an empty list, not a mistake. */
    static const struct cf_param_def none[] = {{0}};
    static const struct cf_task_def t3 = {.size = sizeof(struct cf_task_def),
                                          .name = "none",
                                          .params = none,
                                          .execute = dummy_execute};
    static const struct cf_task_def *const tasks3[] = {&t3, NULL};
    m.tasks = tasks3;
    assert_int_equal(cf_registry_add_module(r, &m, "n.so", err, sizeof(err)), 0);
    assert_int_equal(cf_task_param_count(&t3), 0);
    cf_registry_free(r);
}

/* A plug-in built against a later minor version has bigger parameter definitions: the registry
 * must step by their size, not by its own sizeof. */
struct big_param {
    struct cf_param_def base;
    const char *later;
    int64_t more[3];
};

static const char *const colours[] = {"red", "green", NULL};

static const struct big_param big_params[] = {
    {.base = {.size = sizeof(struct big_param),
              .name = "first",
              .flags = CF_PARAM_MANDATORY,
              .description = "The first."},
     .later = "garbage for a 1.0 reader",
     .more = {-1, -1, -1}},
    {.base = {.size = sizeof(struct big_param),
              .name = "second",
              .type = CF_PARAM_INTEGER,
              .default_value = "5",
              .description = "The second."},
     .later = "x",
     .more = {1, 2, 3}},
    {.base = {.size = sizeof(struct big_param),
              .name = "third",
              .valid_values = colours,
              .default_value = "green",
              .description = "The third."}},
    {.base = {.size = sizeof(struct big_param)}, .later = NULL},
};

static void test_param_stride(void **state)
{
    (void)state;
    static const struct cf_task_def t = {.size = sizeof(struct cf_task_def),
                                         .name = "strided",
                                         .params = &big_params[0].base,
                                         .execute = dummy_execute};
    static const struct cf_task_def *const tasks[] = {&t, NULL};
    struct cf_module m = module_a;
    m.tasks = tasks;
    struct cf_registry *r = cf_registry_new(&host);
    char err[1024];
    assert_int_equal(cf_registry_add_module(r, &m, "big.so", err, sizeof(err)), 0);

    assert_int_equal(cf_task_param_count(&t), 3);
    assert_ptr_equal(cf_task_param_at(&t, 0), &big_params[0].base);
    assert_ptr_equal(cf_task_param_at(&t, 1), &big_params[1].base);
    assert_ptr_equal(cf_task_param_at(&t, 2), &big_params[2].base);
    assert_null(cf_task_param_at(&t, 3));
    assert_ptr_equal(cf_task_param_find(&t, "third"), &big_params[2].base);
    assert_string_equal(cf_task_param_find(&t, "second")->default_value, "5");

    struct cf_buf b;
    cf_buf_init(&b);
    cf_registry_manual(r, &b);
    assert_non_null(strstr(b.data, "first (string, mandatory)"));
    assert_non_null(strstr(b.data, "second (integer, optional)"));
    assert_non_null(strstr(b.data, "valid values: red, green"));
    assert_null(strstr(b.data, "garbage"));
    cf_buf_free(&b);
    cf_registry_free(r);
}

/* ---- parameter values ---- */

static const char *const modes[] = {"error", "fail", "fail-retryable", "complete", NULL};

static int check(enum cf_param_type type, unsigned flags, const char *const *valid,
                 const char *value, char *err, size_t errlen)
{
    struct cf_param_def p = {
        .size = sizeof(p), .name = "param", .type = type, .flags = flags, .valid_values = valid};
    return cf_param_check_value(&p, value, err, errlen);
}

static void test_check_value(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(check(CF_PARAM_BOOLEAN, 0, NULL, "true", err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(check(CF_PARAM_BOOLEAN, 0, NULL, "false", err, sizeof(err)), 0);
    assert_int_equal(check(CF_PARAM_BOOLEAN, 0, NULL, "True", err, sizeof(err)), CF_EINVAL);
    assert_int_equal(check(CF_PARAM_BOOLEAN, 0, NULL, "yes", err, sizeof(err)), CF_EINVAL);
    assert_string_equal(err, "parameter 'param' must be true or false; got 'yes'");

    const char *good_ints[] = {"0", "42", "-7", "+3", "9223372036854775807"};
    for (size_t i = 0; i < CF_ARRAY_LEN(good_ints); i++)
        assert_int_equal(check(CF_PARAM_INTEGER, 0, NULL, good_ints[i], err, sizeof(err)), 0);
    const char *bad_ints[] = {"", "-", "4.2", " 4", "4 ", "12abc", "0x10", "9223372036854775808"};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad_ints); i++) {
        assert_int_equal(check(CF_PARAM_INTEGER, 0, NULL, bad_ints[i], err, sizeof(err)),
                         CF_EINVAL);
        assert_non_null(strstr(err, "parameter 'param' must be a decimal integer"));
    }

    assert_int_equal(check(CF_PARAM_VARIABLE, 0, NULL, "certSerial", err, sizeof(err)), 0);
    assert_int_equal(check(CF_PARAM_VARIABLE, 0, NULL, "_x1", err, sizeof(err)), 0);
    const char *bad_vars[] = {"", "1x", "a-b", "a b", "${x}"};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad_vars); i++) {
        assert_int_equal(check(CF_PARAM_VARIABLE, 0, NULL, bad_vars[i], err, sizeof(err)),
                         CF_EINVAL);
        assert_non_null(strstr(err, "must be the name of a process variable"));
    }

    assert_int_equal(check(CF_PARAM_STRING, 0, modes, "fail", err, sizeof(err)), 0);
    assert_int_equal(check(CF_PARAM_STRING, 0, modes, "Fail", err, sizeof(err)), CF_EINVAL);
    assert_string_equal(err, "parameter 'param' must be one of: error, fail, fail-retryable, "
                             "complete; got 'Fail'");
    assert_int_equal(check(CF_PARAM_STRING, 0, modes, "", err, sizeof(err)), CF_EINVAL);
    assert_int_equal(check(CF_PARAM_TEXT, 0, NULL, "any\nthing", err, sizeof(err)), 0);
    assert_int_equal(check(CF_PARAM_STRING, 0, NULL, NULL, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "parameter 'param' has no value"));

    /* Type and list together: the message gives both rules. */
    static const char *const sizes[] = {"2048", "3072", NULL};
    assert_int_equal(check(CF_PARAM_INTEGER, 0, sizes, "4096", err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "must be one of: 2048, 3072; got '4096'"));
    assert_int_equal(check(CF_PARAM_INTEGER, 0, sizes, "big", err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "must be a decimal integer that fits in 64 bits and one of: 2048, "
                                "3072"));

    /* A long or multi-line value is cut and kept on one line. */
    char long_value[300];
    memset(long_value, 'v', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    long_value[3] = '\n';
    assert_int_equal(check(CF_PARAM_STRING, 0, modes, long_value, err, sizeof(err)), CF_EINVAL);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, "(cut, 299 bytes in all)"));

    /* NULL or short error buffers are allowed. */
    assert_int_equal(check(CF_PARAM_BOOLEAN, 0, NULL, "no", NULL, 0), CF_EINVAL);
    char small[8];
    assert_int_equal(check(CF_PARAM_BOOLEAN, 0, NULL, "no", small, sizeof(small)), CF_EINVAL);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_check_value_never_shows_secret(void **state)
{
    (void)state;
    char err[512];
    const char *secret = "hunter2-Sup3rSecret";
    assert_int_equal(check(CF_PARAM_STRING, CF_PARAM_SECRET, modes, secret, err, sizeof(err)),
                     CF_EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "parameter 'param' must be one of: error, fail, fail-retryable, "
                                "complete"));
    assert_non_null(strstr(err, "secret and not shown"));

    const char *types[] = {"BOOLEAN", "INTEGER", "VARIABLE"};
    enum cf_param_type t[] = {CF_PARAM_BOOLEAN, CF_PARAM_INTEGER, CF_PARAM_VARIABLE};
    for (size_t i = 0; i < CF_ARRAY_LEN(t); i++) {
        assert_int_equal(
            check(t[i], CF_PARAM_SECRET | CF_PARAM_MANDATORY, NULL, "hunter2 x", err, sizeof(err)),
            CF_EINVAL);
        if (strstr(err, "hunter2"))
            fail_msg("a %s secret leaked into: %s", types[i], err);
        assert_non_null(strstr(err, "parameter 'param'"));
    }

    /* Not even part of it when the list of valid values is long. */
    assert_int_equal(check(CF_PARAM_STRING, CF_PARAM_SECRET, modes, "error2", err, sizeof(err)),
                     CF_EINVAL);
    assert_null(strstr(err, "error2"));
}

/* ---- the manual ---- */

static void test_manual(void **state)
{
    (void)state;
    struct cf_registry *r = cf_registry_new(&host);
    struct cf_buf b;
    cf_buf_init(&b);
    cf_registry_manual(r, &b);
    assert_string_equal(b.data, "No tasks are registered.\n");
    cf_buf_reset(&b);

    char err[1024];
    assert_int_equal(cf_registry_load_file(r, CF_PLUGIN_DIR "/demo.so", err, sizeof(err)), 0);
    assert_int_equal(cf_registry_load_file(r, CF_PLUGIN_DIR "/noop.so", err, sizeof(err)), 0);

    static const struct cf_param_def secret_params[] = {
        {.size = sizeof(struct cf_param_def),
         .name = "password",
         .flags = CF_PARAM_SECRET,
         .default_value = "changeit-default",
         .description = "A password with a default that is a secret all the same."},
        {0},
    };
    static const struct cf_task_def secret_task = {.size = sizeof(struct cf_task_def),
                                                   .name = "secretive",
                                                   .summary = "Keeps a secret.",
                                                   .params = secret_params,
                                                   .flags = CF_TASK_EXTRA_PARAMS,
                                                   .execute = dummy_execute};
    static const struct cf_task_def *const tasks[] = {&secret_task, NULL};
    struct cf_module m = module_a;
    m.tasks = tasks;
    assert_int_equal(cf_registry_add_module(r, &m, "test", err, sizeof(err)), 0);

    cf_registry_manual(r, &b);
    const char *man = b.data;
    const char *expect[] = {
        "setVariablesTask\n    Sets process variables",
        "    module: demo 0.1.0 (" CF_PLUGIN_DIR "/demo.so)\n",
        "        variables (text, mandatory)\n",
        "        delayMs (integer, optional)\n            default: 0\n",
        "throwErrorTask\n",
        "    aliases (deprecated): throwBpmnErrorTask\n",
        ("        mode (string, mandatory)\n"
         "            valid values: error, fail, fail-retryable, complete\n"),
        "        errorCode (string, optional)\n            default: DemoError\n",
        "        secretToken (string, optional, secret)\n",
        "    BPMN errors: DemoError, CaConnectionFailed, CaRequestFailed, CommonError\n",
        "noopTask\n",
        "    parameters: none\n",
        "    BPMN errors: none\n",
        "        password (string, optional, secret)\n",
        "default: (set, but secret and not shown)",
        "It also takes parameters beyond these",
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(expect); i++) {
        if (!strstr(man, expect[i]))
            fail_msg("manual lacks \"%s\":\n%s", expect[i], man);
    }
    assert_null(strstr(man, "changeit"));
    /* Tasks appear in registration order, and the prose is wrapped for a terminal. */
    assert_true(strstr(man, "setVariablesTask\n") < strstr(man, "throwErrorTask\n"));
    assert_true(strstr(man, "throwErrorTask\n") < strstr(man, "noopTask\n"));
    for (const char *line = man; *line;) {
        size_t len = strcspn(line, "\n");
        if (strncmp(line, "    module:", 11) != 0 && len > 80)
            fail_msg("line longer than 80 columns: %.*s", (int)len, line);
        line += len + (line[len] == '\n');
    }
    cf_buf_free(&b);
    cf_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_dir_finds_demo_and_noop),
        cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_load_dir_keeps_going),
        cmocka_unit_test(test_duplicates_refused),
        cmocka_unit_test(test_abi_versions),
        cmocka_unit_test(test_structs_too_small),
        cmocka_unit_test(test_bad_task_definitions),
        cmocka_unit_test(test_bad_parameter_definitions),
        cmocka_unit_test(test_param_stride),
        cmocka_unit_test(test_check_value),
        cmocka_unit_test(test_check_value_never_shows_secret),
        cmocka_unit_test(test_manual),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
