/*
 * certflow: the command-line tool. It validates BPMN files, runs a process locally and prints its
 * trace, prints the manual of the loaded plug-in tasks, edits the admin configuration of task
 * parameters, and lists and retries incidents, all against a local database file.
 *
 * Exit codes: 0 success, 1 the thing asked for failed (invalid file, incident, error), 2 usage.
 * Secret parameter values are never printed: they show as "***".
 */
#define _XOPEN_SOURCE 700 /* realpath() */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/value.h"
#include "bpmn/model.h"
#include "ca_cmds.h"
#include "run/engine.h"
#include "users.h"

/* tools/cli/remote.c: the same tool against a running certflowd (--url). */
int cf_cli_remote_wanted(int argc, char **argv);
int cf_cli_remote(int argc, char **argv);

#define CF_VERSION "0.1.0"

static const char *usage_text =
    "usage: certflow [--plugins DIR] [--log-level LEVEL] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  validate FILE... [--db PATH]       check BPMN files; one line per problem:\n"
    "                                     FILE:LINE: ELEMENT-ID: PROBLEM\n"
    "  run FILE [--var NAME[:TYPE]=VALUE]... [--db PATH] [--process KEY]\n"
    "      [--business-key KEY] [--wait] [--timeout SECONDS]\n"
    "                                     deploy FILE, start one instance, run it until it ends\n"
    "                                     or waits, and print its trace\n"
    "  tasks                              the manual of every loaded plug-in task\n"
    "  params set KEY ACTIVITY NAME (VALUE | --stdin) --db PATH\n"
    "  params get KEY ACTIVITY NAME --db PATH\n"
    "  params unset KEY ACTIVITY NAME --db PATH\n"
    "  params list KEY [ACTIVITY] --db PATH\n"
    "                                     admin configuration of task parameters; it takes\n"
    "                                     precedence over the BPMN's inputs and fields\n"
    "  incidents [INSTANCE] --db PATH     open incidents\n"
    "  retry INCIDENT [--retries N] [--wait] --db PATH\n"
    "                                     retry an incident and run until the instance ends or\n"
    "                                     waits again\n"
    "  trace INSTANCE --db PATH           print the trace of an instance\n"
    "  correlate MESSAGE [--business-key KEY] [--match NAME[:TYPE]=VALUE]...\n"
    "      [--var NAME[:TYPE]=VALUE]... [--all] [--wait] [--timeout S] --db PATH\n"
    "                                     deliver a message to the instance waiting for it (or\n"
    "                                     start one at a message start event)\n"
    "  resume [--wait] [--timeout S] --db PATH\n"
    "                                     run what is due in a database (after a stop or crash);\n"
    "                                     with --wait, go on until every instance has ended\n"
    "  ca init|show [--dir DIR | --db PATH] ...\n"
    "                                     the embedded CA (certflow ca --help)\n"
    "  templates add|update|list|show|remove ... [--db PATH]\n"
    "                                     certificate templates (certflow templates --help)\n"
    "  user add|list|passwd|map-cert|delete ... [--db PATH]\n"
    "                                     users of certflowd (certflow user --help)\n"
    "  --url URL COMMAND ...              deploy, list, get, start, cancel, retry, params,\n"
    "                                     certs, status against a running certflowd\n"
    "                                     (certflow --url URL help)\n"
    "\n"
    "TYPE is String (default), Long, Double, Boolean, Json or Null.\n"
    "Plug-ins are loaded from --plugins, $CERTFLOW_PLUGINS, or the plugins folder next to the\n"
    "folder of this program.\n";

static void usage_error(const char *fmt, ...) CF_PRINTF(1, 2);

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("certflow: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(certflow --help for usage)\n", stderr);
    exit(2);
}

struct globals {
    const char *plugin_dir;
    char plugin_dir_buf[PATH_MAX + 16];
};

static const char *default_plugin_dir(struct globals *g)
{
    const char *env = getenv("CERTFLOW_PLUGINS");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    char joined[PATH_MAX + 16];
    snprintf(joined, sizeof(joined), "%s/../plugins", exe);
    if (!realpath(joined, g->plugin_dir_buf))
        return NULL;
    return g->plugin_dir_buf;
}

/* --- engine session: loop + engine --- */

struct session {
    uv_loop_t loop;
    struct cf_engine *engine;
    struct cf_ca_svc *ca; /* the "ca" service, for certificate tasks */
    char *db_path;
    bool temp_db;
    int64_t watch_instance;
    bool ended;
    bool wait;
    uv_timer_t timeout;
    uv_timer_t keepalive;
    bool timed_out;
    bool all_ended;
    bool stuck;           /* the watched instance has an incident */
    bool until_all_ended; /* resume --wait: stop when no instance is active any more */
};

static int count_active(void *arg, const struct cf_inst_row *r);

static void on_ended(void *arg, int64_t instance_id, const char *state)
{
    struct session *s = arg;
    (void)state;
    if (s->until_all_ended) {
        int active = 0;
        cf_store_instance_list(cf_engine_store(s->engine), "ACTIVE", count_active, &active);
        /* Timer start events still to fire count as work to wait for. */
        if (!active && !cf_engine_next_due(s->engine)) {
            s->all_ended = true;
            uv_stop(&s->loop);
        }
        return;
    }
    if (instance_id && instance_id == s->watch_instance) {
        s->ended = true;
        uv_stop(&s->loop);
    }
}

static void on_incident(void *arg, int64_t instance_id, const char *activity_id, const char *type,
                        const char *message)
{
    struct session *s = arg;
    (void)activity_id;
    (void)type;
    (void)message;
    if (instance_id && instance_id == s->watch_instance)
        s->stuck = true;
}

static void on_idle(void *arg)
{
    struct session *s = arg;
    /* Nothing runnable: without --wait the instance is waiting (timer, retry, incident); with
     * --wait, an incident on the watched instance will not go away by waiting. */
    if (!s->wait || s->stuck)
        uv_stop(&s->loop);
}

static void on_timeout(uv_timer_t *t)
{
    struct session *s = t->data;
    s->timed_out = true;
    uv_stop(&s->loop);
}

static int session_open(struct session *s, struct globals *g, const char *db)
{
    memset(s, 0, sizeof(*s));
    uv_loop_init(&s->loop);
    if (db) {
        s->db_path = cf_xstrdup(db);
    } else {
        const char *tmp = getenv("TMPDIR");
        s->db_path =
            cf_xasprintf("%s/certflow-run-%ld.db", tmp && *tmp ? tmp : "/tmp", (long)getpid());
        s->temp_db = true;
    }
    struct cf_engine_options opt = {.db_path = s->db_path, .plugin_dir = g->plugin_dir};
    char err[1024];
    if (cf_engine_open(&s->loop, &opt, &s->engine, err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: %s\n", err);
        uv_loop_close(&s->loop);
        free(s->db_path);
        return 1;
    }
    struct cf_engine_observer obs = {
        .instance_ended = on_ended, .incident = on_incident, .idle = on_idle, .arg = s};
    cf_engine_set_observer(s->engine, &obs);
    s->ca = cf_cli_ca_attach(s->engine, s->db_path, s->temp_db);
    uv_timer_init(&s->loop, &s->timeout);
    uv_timer_init(&s->loop, &s->keepalive);
    s->timeout.data = s;
    return 0;
}

static void keepalive_cb(uv_timer_t *t)
{
    (void)t;
}

static void session_close(struct session *s)
{
    cf_engine_close(s->engine);
    cf_cli_ca_detach(s->ca);
    uv_close((uv_handle_t *)&s->timeout, NULL);
    uv_close((uv_handle_t *)&s->keepalive, NULL);
    /* A uv_stop() left over from an observer makes one uv_run return early: run until every
     * handle is closed. */
    while (uv_run(&s->loop, UV_RUN_DEFAULT) != 0) {
    }
    if (uv_loop_close(&s->loop) != 0)
        fprintf(stderr, "certflow: warning: event loop still had open handles\n");
    if (s->temp_db) {
        const char *suffixes[] = {"", "-wal", "-shm"};
        for (unsigned i = 0; i < CF_ARRAY_LEN(suffixes); i++) {
            char *p = cf_xasprintf("%s%s", s->db_path, suffixes[i]);
            unlink(p);
            free(p);
        }
        cf_cli_ca_remove_temp(s->db_path);
    }
    free(s->db_path);
}

/* Runs the loop until the watched instance ends, nothing is runnable (unless --wait), or the
 * timeout passes. With --wait a keep-alive timer holds the loop open while the engine only waits
 * for the clock. */
static void session_run(struct session *s, double timeout_s)
{
    if (timeout_s > 0)
        uv_timer_start(&s->timeout, on_timeout, (uint64_t)(timeout_s * 1000.0), 0);
    if (s->wait)
        uv_timer_start(&s->keepalive, keepalive_cb, 1000, 1000);
    while (!s->ended && !s->timed_out && !s->all_ended) {
        if ((!s->wait || s->stuck) && cf_engine_is_idle(s->engine))
            break;
        if (uv_run(&s->loop, UV_RUN_DEFAULT) == 0 && cf_engine_is_idle(s->engine))
            break;
    }
    uv_timer_stop(&s->timeout);
    uv_timer_stop(&s->keepalive);
}

/* --- trace --- */

struct trace_ctx {
    FILE *out;
    size_t count;
};

static int print_hist(void *arg, const struct cf_hist_row *r)
{
    struct trace_ctx *t = arg;
    fprintf(t->out, "  %-28s %-22s %s\n", r->activity_id, r->activity_type,
            r->end_state ? r->end_state : "active");
    t->count++;
    return 0;
}

struct var_line {
    char *name;
    char *text;
};

struct var_lines {
    struct var_line *items;
    size_t n;
    int64_t root;
};

static int collect_var(void *arg, int64_t execution_id, const char *name, const struct cf_val *v)
{
    struct var_lines *vl = arg;
    if (vl->root == 0)
        vl->root = execution_id;
    if (execution_id != vl->root)
        return 0;
    struct cf_buf b;
    cf_buf_init(&b);
    cf_val_render(v, &b);
    cf_buf_printf(&b, "  (%s)", cf_val_type_name(v->type));
    vl->items = cf_xrealloc(vl->items, (vl->n + 1) * sizeof(*vl->items));
    vl->items[vl->n].name = cf_xstrdup(name);
    vl->items[vl->n].text = cf_buf_steal(&b);
    vl->n++;
    return 0;
}

static int cmp_var_line(const void *a, const void *b)
{
    return strcmp(((const struct var_line *)a)->name, ((const struct var_line *)b)->name);
}

static int first_exec(void *arg, const struct cf_exec_row *r)
{
    int64_t *root = arg;
    if (!*root && !r->parent_id)
        *root = r->id;
    return 0;
}

static int print_incident(void *arg, const struct cf_incident_row *r)
{
    struct trace_ctx *t = arg;
    fprintf(t->out, "  incident %" PRId64 " at %s (%s): %s\n", r->id, r->activity_id, r->type,
            r->message);
    t->count++;
    return 0;
}

static int print_job(void *arg, const struct cf_job_row *r)
{
    struct trace_ctx *t = arg;
    if (r->retries <= 0)
        return 0;
    char ts[CF_TIME_ISO_LEN];
    cf_time_iso(r->due_at, ts);
    fprintf(t->out, "  job %" PRId64 " (%s) at %s due %s, %d attempts left%s%s\n", r->id, r->type,
            r->activity_id ? r->activity_id : "-", ts, r->retries,
            r->last_error ? "; last error: " : "", r->last_error ? r->last_error : "");
    t->count++;
    return 0;
}

/* Prints the trace of an instance; returns 0 when it completed, 1 otherwise. */
static int print_trace(struct cf_store *st, int64_t instance_id, FILE *out)
{
    struct cf_inst_row inst;
    if (cf_store_instance_get(st, instance_id, &inst) != 0) {
        fprintf(stderr, "certflow: instance %" PRId64 " does not exist\n", instance_id);
        return 1;
    }
    struct cf_def_row def;
    memset(&def, 0, sizeof(def));
    cf_store_def_get(st, inst.definition_id, false, &def);
    fprintf(out, "instance %" PRId64 " of %s version %d%s%s\n", instance_id,
            def.key ? def.key : "?", def.version, inst.business_key ? ", business key " : "",
            inst.business_key ? inst.business_key : "");
    fprintf(out, "activities:\n");
    struct trace_ctx t = {.out = out};
    cf_store_hist_list(st, instance_id, print_hist, &t);
    fprintf(out, "variables:\n");
    struct var_lines vl = {0};
    cf_store_exec_load(st, instance_id, first_exec, &vl.root);
    cf_store_var_load(st, instance_id, collect_var, &vl);
    if (vl.n)
        qsort(vl.items, vl.n, sizeof(*vl.items), cmp_var_line);
    for (size_t i = 0; i < vl.n; i++) {
        fprintf(out, "  %s = %s\n", vl.items[i].name, vl.items[i].text);
        free(vl.items[i].name);
        free(vl.items[i].text);
    }
    free(vl.items);
    if (!vl.n)
        fprintf(out, "  (none)\n");
    fprintf(out, "incidents:\n");
    t.count = 0;
    cf_store_incident_list(st, instance_id, true, print_incident, &t);
    if (!t.count)
        fprintf(out, "  (none)\n");
    if (strcmp(inst.state, "ACTIVE") == 0) {
        fprintf(out, "waiting:\n");
        t.count = 0;
        cf_store_jobs_of_instance(st, instance_id, print_job, &t);
        if (!t.count)
            fprintf(out, "  (nothing scheduled)\n");
    }
    fprintf(out, "state: %s\n", inst.state);
    int rc = strcmp(inst.state, "ACTIVE") == 0 ? 1 : 0;
    cf_inst_row_free(&inst);
    cf_def_row_free(&def);
    return rc;
}

/* --- variables from the command line --- */

static int parse_var(const char *arg, struct cf_named_val *out)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        usage_error("--var needs NAME=VALUE or NAME:TYPE=VALUE, got '%s'", arg);
    char *name = cf_xstrndup(arg, (size_t)(eq - arg));
    const char *value = eq + 1;
    enum cf_value_type type = CF_VALUE_STRING;
    char *colon = strchr(name, ':');
    if (colon) {
        *colon = '\0';
        if (cf_val_type_parse(colon + 1, &type) != 0 || type == CF_VALUE_BYTES ||
            type == CF_VALUE_DATE)
            usage_error("--var %s: unknown type '%s' (String, Long, Double, Boolean, Json, Null)",
                        name, colon + 1);
    }
    out->name = name;
    out->val.type = CF_VALUE_NULL;
    int64_t l;
    double d;
    switch (type) {
    case CF_VALUE_STRING:
        cf_val_set_string(&out->val, value);
        break;
    case CF_VALUE_LONG:
        if (cf_parse_i64(value, &l) != 0)
            usage_error("--var %s: '%s' is not a Long", name, value);
        cf_val_set_long(&out->val, l);
        break;
    case CF_VALUE_DOUBLE:
        if (cf_parse_double(value, &d) != 0)
            usage_error("--var %s: '%s' is not a Double", name, value);
        cf_val_set_double(&out->val, d);
        break;
    case CF_VALUE_BOOLEAN:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
            usage_error("--var %s: a Boolean is true or false, not '%s'", name, value);
        cf_val_set_bool(&out->val, strcmp(value, "true") == 0);
        break;
    case CF_VALUE_JSON: {
        json_error_t je;
        json_t *j = json_loads(value, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!j)
            usage_error("--var %s: invalid JSON at column %d: %s", name, je.column, je.text);
        cf_val_take_json(&out->val, j);
        break;
    }
    default:
        break;
    }
    return 0;
}

/* --- commands --- */

static int print_diags(const char *file, const struct cf_diags *d, FILE *out)
{
    struct cf_buf b;
    cf_buf_init(&b);
    cf_diags_format(d, file, &b);
    fputs(b.data ? b.data : "", out);
    cf_buf_free(&b);
    return 0;
}

static struct cf_registry *load_registry(struct globals *g)
{
    static struct cf_host dummy = {.size = sizeof(struct cf_host),
                                   .abi_major = CF_PLUGIN_ABI_MAJOR,
                                   .abi_minor = CF_PLUGIN_ABI_MINOR};
    struct cf_registry *r = cf_registry_new(&dummy);
    if (g->plugin_dir) {
        char err[2048];
        err[0] = '\0';
        if (cf_registry_load_dir(r, g->plugin_dir, err, sizeof(err)) != 0)
            fprintf(stderr, "certflow: plug-ins: %s\n", err);
    }
    return r;
}

static int cmd_validate(struct globals *g, int argc, char **argv)
{
    const char *db = NULL;
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            db = optarg;
        else
            usage_error("validate: unknown option");
    }
    if (optind >= argc)
        usage_error("validate needs at least one FILE");
    cf_bpmn_global_init();
    struct cf_registry *reg = load_registry(g);
    struct cf_store *st = NULL;
    char err[1024];
    if (db) {
        struct cf_store_options so = {.read_only = true};
        if (cf_store_open(db, &so, &st, err, sizeof(err)) != 0) {
            fprintf(stderr, "certflow: %s\n", err);
            cf_registry_free(reg);
            return 1;
        }
    }
    int bad = 0;
    for (int i = optind; i < argc; i++) {
        struct cf_diags diags, warnings;
        cf_diags_init(&diags);
        cf_diags_init(&warnings);
        struct cf_model **models = NULL;
        size_t n = 0;
        int rc = cf_bpmn_load_file(argv[i], &models, &n, &diags);
        if (!rc)
            rc = cf_engine_check_models(reg, st, "", models, n, &diags, &warnings);
        print_diags(argv[i], &warnings, stderr);
        if (rc) {
            print_diags(argv[i], &diags, stdout);
            bad = 1;
        } else {
            printf("%s: ok (%zu process%s:", argv[i], n, n == 1 ? "" : "es");
            for (size_t k = 0; k < n; k++)
                printf(" %s", models[k]->key);
            printf(")\n");
        }
        cf_models_free(models, n);
        cf_diags_free(&diags);
        cf_diags_free(&warnings);
    }
    cf_store_close(st);
    cf_registry_free(reg);
    return bad;
}

static int cmd_run(struct globals *g, int argc, char **argv)
{
    const char *db = NULL, *process = NULL, *bkey = NULL;
    bool wait = false;
    double timeout_s = 0;
    struct cf_named_val *vars = NULL;
    size_t n_vars = 0;
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"var", required_argument, NULL, 'v'},
                                         {"process", required_argument, NULL, 'p'},
                                         {"business-key", required_argument, NULL, 'b'},
                                         {"wait", no_argument, NULL, 'w'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'v':
            vars = cf_xrealloc(vars, (n_vars + 1) * sizeof(*vars));
            parse_var(optarg, &vars[n_vars++]);
            break;
        case 'p':
            process = optarg;
            break;
        case 'b':
            bkey = optarg;
            break;
        case 'w':
            wait = true;
            break;
        case 't':
            if (cf_parse_double(optarg, &timeout_s) != 0 || timeout_s <= 0)
                usage_error("--timeout needs a positive number of seconds");
            break;
        default:
            usage_error("run: unknown option");
        }
    }
    if (optind != argc - 1)
        usage_error("run needs exactly one FILE");
    const char *file = argv[optind];
    int result = 1;
    uint8_t *xml = NULL;
    size_t len = 0;
    char err[1024];
    struct session s;
    if (cf_read_file(file, CF_BPMN_MAX_BYTES, &xml, &len, err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: %s\n", err);
        goto out_vars;
    }
    if (session_open(&s, g, db) != 0)
        goto out_vars;
    s.wait = wait;
    const char *slash = strrchr(file, '/');
    struct cf_deploy_result dep;
    if (cf_engine_deploy(s.engine, slash ? slash + 1 : file, xml, len, "", &dep) != 0) {
        print_diags(file, &dep.diags, stderr);
        cf_deploy_result_free(&dep);
        goto out_session;
    }
    print_diags(file, &dep.warnings, stderr);
    struct cf_deployed *chosen = NULL;
    for (size_t i = 0; i < dep.n_defs; i++)
        if (!process || strcmp(dep.defs[i].key, process) == 0) {
            chosen = &dep.defs[i];
            break;
        }
    if (!chosen) {
        fprintf(stderr, "certflow: %s has no executable process named '%s'\n", file,
                process ? process : "");
        cf_deploy_result_free(&dep);
        goto out_session;
    }
    int64_t instance_id;
    if (cf_engine_start(s.engine, chosen->definition_id, bkey, vars, n_vars, &instance_id, err,
                        sizeof(err)) != 0) {
        fprintf(stderr, "certflow: %s\n", err);
        cf_deploy_result_free(&dep);
        goto out_session;
    }
    cf_deploy_result_free(&dep);
    s.watch_instance = instance_id;
    session_run(&s, timeout_s);
    if (s.timed_out)
        fprintf(stderr, "certflow: --timeout reached; the instance goes on where it stopped\n");
    result = print_trace(cf_engine_store(s.engine), instance_id, stdout);
out_session:
    session_close(&s);
out_vars:
    free(xml);
    for (size_t i = 0; i < n_vars; i++) {
        free((char *)vars[i].name);
        cf_val_free(&vars[i].val);
    }
    free(vars);
    return result;
}

static int cmd_tasks(struct globals *g, int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        usage_error("tasks takes no arguments");
    struct cf_registry *reg = load_registry(g);
    struct cf_buf b;
    cf_buf_init(&b);
    cf_registry_manual(reg, &b);
    fputs(b.data ? b.data : "", stdout);
    if (!cf_registry_count(reg))
        printf("no plug-in tasks loaded (plug-in folder: %s)\n",
               g->plugin_dir ? g->plugin_dir : "none");
    cf_buf_free(&b);
    cf_registry_free(reg);
    return 0;
}

/* The task definition behind an activity of the latest deployed version of `key`. */
static const struct cf_task_def *task_of(struct cf_store *st, struct cf_registry *reg,
                                         const char *key, const char *activity, char *err,
                                         size_t errlen)
{
    struct cf_def_row latest;
    if (cf_store_def_latest(st, "", key, &latest) != 0) {
        cf_errf(err, errlen, "no process with key '%s' is deployed in this database", key);
        return NULL;
    }
    struct cf_def_row full;
    const struct cf_task_def *t = NULL;
    if (cf_store_def_get(st, latest.id, true, &full) == 0) {
        struct cf_model **models = NULL;
        size_t n = 0;
        struct cf_diags d;
        cf_diags_init(&d);
        if (cf_bpmn_load(full.xml, full.xml_len, &models, &n, &d) == 0) {
            for (size_t i = 0; i < n; i++) {
                if (strcmp(models[i]->key, key) != 0)
                    continue;
                struct cf_elem *el = cf_model_find(models[i], activity);
                if (!el || el->type != CF_EL_SERVICE_TASK)
                    cf_errf(err, errlen, "process '%s' has no service task with id '%s'", key,
                            activity);
                else if (!(t = cf_registry_find(reg, el->delegate, NULL)))
                    cf_errf(err, errlen, "activity '%s' calls ${%s}, which no loaded plug-in has",
                            activity, el->delegate);
            }
        }
        cf_models_free(models, n);
        cf_diags_free(&d);
        cf_def_row_free(&full);
    }
    cf_def_row_free(&latest);
    return t;
}

struct param_print {
    struct cf_store *st;
    struct cf_registry *reg;
    const char *key;
    const char *only_name;
    int found;
};

static int print_param(void *arg, const char *activity_id, const char *name, const char *value)
{
    struct param_print *pp = arg;
    if (pp->only_name && strcmp(name, pp->only_name) != 0)
        return 0;
    char err[256];
    /* Secrecy comes from the schema of the task behind the activity; when that cannot be told,
     * the value is treated as a secret. */
    const struct cf_task_def *t = task_of(pp->st, pp->reg, pp->key, activity_id, err, sizeof(err));
    const struct cf_param_def *p = t ? cf_task_param_find(t, name) : NULL;
    bool secret = !t || (p && (p->flags & CF_PARAM_SECRET));
    if (pp->only_name)
        printf("%s\n", secret ? "***" : value);
    else
        printf("%s %s=%s\n", activity_id, name, secret ? "***" : value);
    pp->found++;
    return 0;
}

static char *read_stdin_value(void)
{
    struct cf_buf b;
    cf_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        cf_buf_append(&b, chunk, n);
    while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    return cf_buf_steal(&b);
}

static int cmd_params(struct globals *g, int argc, char **argv)
{
    const char *db = NULL;
    bool from_stdin = false;
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'}, {"stdin", no_argument, NULL, 's'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            db = optarg;
        else if (c == 's')
            from_stdin = true;
        else
            usage_error("params: unknown option");
    }
    if (!db)
        usage_error("params needs --db PATH");
    int nargs = argc - optind;
    char **a = argv + optind;
    if (nargs < 2)
        usage_error("params needs a verb (set, get, unset, list) and a process key");
    const char *verb = a[0];
    char err[1024];
    struct cf_store *st;
    if (cf_store_open(db, NULL, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: %s\n", err);
        return 1;
    }
    cf_bpmn_global_init();
    struct cf_registry *reg = load_registry(g);
    int result = 1;
    if (strcmp(verb, "set") == 0) {
        if (nargs != (from_stdin ? 4 : 5))
            usage_error("params set KEY ACTIVITY NAME (VALUE | --stdin)");
        const struct cf_task_def *t = task_of(st, reg, a[1], a[2], err, sizeof(err));
        const struct cf_param_def *p = t ? cf_task_param_find(t, a[3]) : NULL;
        if (!t) {
            fprintf(stderr, "certflow: %s\n", err);
        } else if (!p && !(t->flags & CF_TASK_EXTRA_PARAMS)) {
            fprintf(stderr,
                    "certflow: task '%s' has no parameter named '%s' (see certflow tasks)\n",
                    t->name, a[3]);
        } else {
            char *value = from_stdin ? read_stdin_value() : cf_xstrdup(a[4]);
            bool dynamic = strstr(value, "${") || strstr(value, "#{");
            if (p && !dynamic && cf_param_check_value(p, value, err, sizeof(err)) != 0) {
                fprintf(stderr, "certflow: %s\n", err);
            } else if (cf_store_param_set(st, "", a[1], a[2], a[3], value,
                                          p && (p->flags & CF_PARAM_SECRET), cf_now_ms()) != 0) {
                fprintf(stderr, "certflow: cannot store the parameter: %s\n", cf_store_errmsg(st));
            } else {
                printf("%s %s %s set\n", a[1], a[2], a[3]);
                result = 0;
            }
            free(value);
        }
    } else if (strcmp(verb, "get") == 0 || strcmp(verb, "list") == 0) {
        bool get = strcmp(verb, "get") == 0;
        if (get ? nargs != 4 : (nargs < 2 || nargs > 3))
            usage_error(get ? "params get KEY ACTIVITY NAME" : "params list KEY [ACTIVITY]");
        const char *activity = nargs >= 3 ? a[2] : NULL;
        struct param_print pp = {.st = st, .reg = reg, .key = a[1], .only_name = get ? a[3] : NULL};
        cf_store_param_list(st, "", a[1], activity, print_param, &pp);
        result = get && !pp.found ? 1 : 0;
        if (get && !pp.found)
            fprintf(stderr, "certflow: no admin value for %s %s %s\n", a[1], a[2], a[3]);
    } else if (strcmp(verb, "unset") == 0) {
        if (nargs != 4)
            usage_error("params unset KEY ACTIVITY NAME");
        int rc = cf_store_param_delete(st, "", a[1], a[2], a[3]);
        if (rc == CF_ENOENT)
            fprintf(stderr, "certflow: no admin value for %s %s %s\n", a[1], a[2], a[3]);
        else if (rc)
            fprintf(stderr, "certflow: %s\n", cf_store_errmsg(st));
        else {
            printf("%s %s %s unset\n", a[1], a[2], a[3]);
            result = 0;
        }
    } else {
        usage_error("params: unknown verb '%s' (set, get, unset, list)", verb);
    }
    cf_registry_free(reg);
    cf_store_close(st);
    return result;
}

static int print_open_incident(void *arg, const struct cf_incident_row *r)
{
    int *count = arg;
    char ts[CF_TIME_ISO_LEN];
    cf_time_iso(r->created_at, ts);
    printf("%" PRId64 "  instance %" PRId64 "  %s  %s  %s: %s\n", r->id, r->instance_id, ts,
           r->activity_id, r->type, r->message);
    (*count)++;
    return 0;
}

static int cmd_incidents(struct globals *g, int argc, char **argv)
{
    (void)g;
    const char *db = NULL;
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            db = optarg;
        else
            usage_error("incidents: unknown option");
    }
    if (!db)
        usage_error("incidents needs --db PATH");
    int64_t instance = 0;
    if (optind < argc && cf_parse_i64(argv[optind], &instance) != 0)
        usage_error("incidents: '%s' is not an instance id", argv[optind]);
    char err[1024];
    struct cf_store *st;
    struct cf_store_options so = {.read_only = true};
    if (cf_store_open(db, &so, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: %s\n", err);
        return 1;
    }
    int count = 0;
    cf_store_incident_list(st, instance, true, print_open_incident, &count);
    if (!count)
        printf("no open incidents\n");
    cf_store_close(st);
    return 0;
}

static int cmd_retry(struct globals *g, int argc, char **argv)
{
    const char *db = NULL;
    int retries = 1;
    bool wait = false;
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"retries", required_argument, NULL, 'r'},
                                         {"wait", no_argument, NULL, 'w'},
                                         {0, 0, 0, 0}};
    int c;
    int64_t l;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            db = optarg;
        else if (c == 'r') {
            if (cf_parse_i64(optarg, &l) != 0 || l < 1 || l > 1000)
                usage_error("--retries needs a number from 1 to 1000");
            retries = (int)l;
        } else if (c == 'w')
            wait = true;
        else
            usage_error("retry: unknown option");
    }
    if (!db)
        usage_error("retry needs --db PATH");
    int64_t incident;
    if (optind != argc - 1 || cf_parse_i64(argv[optind], &incident) != 0)
        usage_error("retry needs one INCIDENT id");
    struct session s;
    if (session_open(&s, g, db) != 0)
        return 1;
    s.wait = wait;
    char err[1024];
    struct cf_incident_row inc;
    int result = 1;
    if (cf_store_incident_get(cf_engine_store(s.engine), incident, &inc) != 0) {
        fprintf(stderr, "certflow: incident %" PRId64 " does not exist\n", incident);
    } else if (cf_engine_retry_incident(s.engine, incident, retries, err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: %s\n", err);
        cf_incident_row_free(&inc);
    } else {
        s.watch_instance = inc.instance_id;
        session_run(&s, 0);
        result = print_trace(cf_engine_store(s.engine), inc.instance_id, stdout);
        cf_incident_row_free(&inc);
    }
    session_close(&s);
    return result;
}

static int cmd_trace(struct globals *g, int argc, char **argv)
{
    (void)g;
    const char *db = NULL;
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            db = optarg;
        else
            usage_error("trace: unknown option");
    }
    int64_t instance;
    if (!db || optind != argc - 1 || cf_parse_i64(argv[optind], &instance) != 0)
        usage_error("trace needs one INSTANCE id and --db PATH");
    char err[1024];
    struct cf_store *st;
    struct cf_store_options so = {.read_only = true};
    if (cf_store_open(db, &so, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: %s\n", err);
        return 1;
    }
    int rc = print_trace(st, instance, stdout);
    cf_store_close(st);
    return rc;
}

static void free_vars(struct cf_named_val *vars, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)vars[i].name);
        cf_val_free(&vars[i].val);
    }
    free(vars);
}

static int print_instance_result(int64_t id, struct cf_store *st)
{
    struct cf_inst_row r;
    if (cf_store_instance_get(st, id, &r) != 0)
        return 1;
    printf("instance %" PRId64 ": %s\n", id, r.state);
    cf_inst_row_free(&r);
    return 0;
}

static int cmd_correlate(struct globals *g, int argc, char **argv)
{
    const char *db = NULL, *bkey = NULL;
    bool all = false, wait = false;
    double timeout_s = 0;
    struct cf_named_val *vars = NULL, *match = NULL;
    size_t n_vars = 0, n_match = 0;
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},      {"business-key", required_argument, NULL, 'b'},
        {"match", required_argument, NULL, 'm'},   {"var", required_argument, NULL, 'v'},
        {"all", no_argument, NULL, 'a'},           {"wait", no_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'b':
            bkey = optarg;
            break;
        case 'm':
            match = cf_xrealloc(match, (n_match + 1) * sizeof(*match));
            parse_var(optarg, &match[n_match++]);
            break;
        case 'v':
            vars = cf_xrealloc(vars, (n_vars + 1) * sizeof(*vars));
            parse_var(optarg, &vars[n_vars++]);
            break;
        case 'a':
            all = true;
            break;
        case 'w':
            wait = true;
            break;
        case 't':
            if (cf_parse_double(optarg, &timeout_s) != 0 || timeout_s <= 0)
                usage_error("--timeout needs a positive number of seconds");
            break;
        default:
            usage_error("correlate: unknown option");
        }
    }
    if (!db || optind != argc - 1)
        usage_error("correlate needs one MESSAGE name and --db PATH");
    struct session s;
    int result = 1;
    if (session_open(&s, g, db) == 0) {
        s.wait = wait;
        struct cf_correlation corr = {.message = argv[optind],
                                      .business_key = bkey,
                                      .match = match,
                                      .n_match = n_match,
                                      .vars = vars,
                                      .n_vars = n_vars,
                                      .all = all};
        int64_t ids[64];
        size_t n = 0;
        char err[1024];
        if (cf_engine_correlate(s.engine, &corr, ids, CF_ARRAY_LEN(ids), &n, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "certflow: %s\n", err);
        } else {
            s.watch_instance = n == 1 ? ids[0] : 0;
            session_run(&s, timeout_s);
            printf("message %s delivered to %zu instance%s\n", argv[optind], n, n == 1 ? "" : "s");
            for (size_t i = 0; i < n && i < CF_ARRAY_LEN(ids); i++)
                print_instance_result(ids[i], cf_engine_store(s.engine));
            result = 0;
        }
        session_close(&s);
    }
    free_vars(vars, n_vars);
    free_vars(match, n_match);
    return result;
}

static int count_active(void *arg, const struct cf_inst_row *r)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

static int cmd_resume(struct globals *g, int argc, char **argv)
{
    const char *db = NULL;
    bool wait = false;
    double timeout_s = 0;
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"wait", no_argument, NULL, 'w'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            db = optarg;
        else if (c == 'w')
            wait = true;
        else if (c == 't') {
            if (cf_parse_double(optarg, &timeout_s) != 0 || timeout_s <= 0)
                usage_error("--timeout needs a positive number of seconds");
        } else
            usage_error("resume: unknown option");
    }
    if (!db || optind != argc)
        usage_error("resume needs --db PATH");
    struct session s;
    if (session_open(&s, g, db) != 0)
        return 1;
    s.wait = wait;
    s.until_all_ended = wait;
    int active = 0;
    cf_store_instance_list(cf_engine_store(s.engine), "ACTIVE", count_active, &active);
    if (active || !cf_engine_is_idle(s.engine) || (wait && cf_engine_next_due(s.engine)))
        session_run(&s, timeout_s);
    active = 0;
    cf_store_instance_list(cf_engine_store(s.engine), "ACTIVE", count_active, &active);
    printf("%d instance%s still active%s\n", active, active == 1 ? "" : "s",
           s.timed_out ? " (timeout reached)" : "");
    session_close(&s);
    return active && wait ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (cf_cli_remote_wanted(argc, argv))
        return cf_cli_remote(argc, argv);
    struct globals g = {0};
    enum cf_log_level level = CF_LOG_WARN;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("certflow %s\n", CF_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--plugins") == 0 && i + 1 < argc) {
            g.plugin_dir = argv[++i];
        } else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
            if (cf_log_parse_level(argv[++i], &level) != 0)
                usage_error("--log-level is debug, info, warn or error");
        } else {
            usage_error("unknown option %s", argv[i]);
        }
    }
    if (i >= argc)
        usage_error("no command given");
    cf_log_set_level(level);
    if (!g.plugin_dir)
        g.plugin_dir = default_plugin_dir(&g);
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "tasks") == 0)
        return cmd_tasks(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "params") == 0)
        return cmd_params(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "incidents") == 0)
        return cmd_incidents(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "retry") == 0)
        return cmd_retry(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "trace") == 0)
        return cmd_trace(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "correlate") == 0)
        return cmd_correlate(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "resume") == 0)
        return cmd_resume(&g, sub_argc, sub_argv);
    if (strcmp(cmd, "user") == 0)
        return cf_cli_user(sub_argc, sub_argv);
    if (strcmp(cmd, "ca") == 0)
        return cf_cli_ca(sub_argc, sub_argv);
    if (strcmp(cmd, "templates") == 0)
        return cf_cli_templates(sub_argc, sub_argv);
    usage_error("unknown command '%s'", cmd);
    return 2;
}
