/*
 * cf-bench: the throughput benchmark of the engine. It deploys one BPMN file into a fresh
 * database, starts N instances of its first process while keeping at most C of them in flight,
 * and prints completed instances per second, instance latency (from asking for the start to the
 * instance_ended notification), peak RSS, SQLite commits per instance and the size of the
 * database. Processes made of the no-op plug-in task (processes/bench/five-tasks.bpmn) measure
 * the engine alone; tools/bench/README.md says how to read the figures.
 *
 * What is measured is the engine as a program embedding it uses it: the public API on one libuv
 * loop, durable commits (synchronous=FULL) unless --sync normal is asked for. Instances start
 * either with cf_engine_start(), one transaction each, as the REST API and the CLI start them,
 * or inside the engine's batch transaction (cf_engine_submit()), as pushed requests do. The bench
 * leaves batching, job execution and commits entirely to the engine; it only decides when to
 * start the next instance.
 *
 * Exit codes: 0 when every instance completed, 1 when any did not (or the run could not be set
 * up), 2 usage.
 */
#define _XOPEN_SOURCE 700 /* realpath(), mkdtemp() */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/imap.h"
#include "base/value.h"
#include "bpmn/model.h"
#include "run/engine.h"

#define DEFAULT_N 10000
#define DEFAULT_CONCURRENCY 256

static const char *usage_text =
    "usage: cf-bench FILE [-n N] [-c CONCURRENCY] [-j JOBS] [--db PATH] [--sync normal|full]\n"
    "                [--start direct|tx] [--plugins DIR]\n"
    "\n"
    "Deploys FILE into a fresh database, starts N instances (default 10000) of its first\n"
    "process, at most CONCURRENCY (default 256) in flight, and prints throughput, latency,\n"
    "peak RSS, SQLite commits per instance and the database size. Each instance gets the\n"
    "variable n (Long), its sequence number from 0.\n"
    "\n"
    "  -n N               instances to run\n"
    "  -c CONCURRENCY     instances in flight at most\n"
    "  -j JOBS            the engine's max_concurrent_jobs (default: CONCURRENCY)\n"
    "  --db PATH          database file to create and keep (must not exist); default a\n"
    "                     temporary file that is removed afterwards\n"
    "  --sync full|normal SQLite synchronous mode (default full, the figure that counts)\n"
    "  --start direct|tx  how instances start: direct = cf_engine_start(), one transaction\n"
    "                     each (default, as the REST API and the CLI do); tx = created in\n"
    "                     the engine's batch transaction (cf_engine_submit, group commit)\n"
    "  --plugins DIR      plug-in folder; default $CERTFLOW_PLUGINS or the plugins folder\n"
    "                     next to the folder of this program\n"
    "\n"
    "Exit status: 0 when every instance completed, 1 otherwise, 2 usage.\n";

static void usage_error(const char *fmt, ...) CF_PRINTF(1, 2);

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cf-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(cf-bench --help for usage)\n", stderr);
    exit(2);
}

enum start_mode {
    START_DIRECT, /* cf_engine_start(): one transaction, and so one commit, per instance */
    START_TX,     /* cf_engine_submit(): instances created in the engine's batch (group commit) */
};

struct bench;

/* One per instance, by sequence number. */
struct slot {
    struct bench *b;
    uint64_t t0; /* uv_hrtime() when the start was asked for */
    int64_t id;  /* 0 until known */
};

struct bench {
    uv_loop_t loop;
    /* Starts instances outside the engine's callbacks: the observer runs inside the engine's
     * after-commit step, and starting there would nest one engine transaction and its
     * notifications inside the delivery of another's. */
    uv_idle_t starter;
    /* Ctrl-C (or SIGTERM) ends the run early, with the figures so far and the temporary database
     * removed. */
    uv_signal_t sigint, sigterm;
    bool interrupted;
    struct cf_engine *engine;
    int64_t definition_id;
    enum start_mode mode;
    uint64_t n, concurrency;

    uint64_t started, in_flight;
    uint64_t completed, ended_otherwise, start_failures, incidents;
    bool stop;  /* stop starting: a failure was seen or nothing can move any more */
    bool stuck; /* the engine went idle with instances still in flight */

    struct slot *slots;
    struct cf_imap flight; /* instance id -> its slot, while it runs */
    /* Latencies in ns of the completed instances, in completion order. */
    uint64_t *lat_ns;
    size_t n_lat;
    uint64_t t_first, t_last;

    /* The instance being started with cf_engine_start(), so that an ending reported before the
     * call returns (a process without wait states ends inside its start transaction) is not
     * lost. */
    bool in_start;
    bool start_ended;
    bool start_ended_completed;
};

static void starter_cb(uv_idle_t *h);

static bool all_done(const struct bench *b)
{
    return b->completed + b->ended_otherwise + b->start_failures == b->n;
}

static void record_end(struct bench *b, uint64_t t0, bool completed)
{
    uint64_t now = uv_hrtime();
    b->in_flight--;
    b->t_last = now;
    if (completed) {
        b->lat_ns[b->n_lat++] = now - t0;
        b->completed++;
    } else {
        b->ended_otherwise++;
    }
    if (all_done(b))
        uv_stop(&b->loop);
    else if (!b->stop && b->started < b->n && !uv_is_active((uv_handle_t *)&b->starter))
        uv_idle_start(&b->starter, starter_cb);
}

static void record_start_failure(struct bench *b, uint64_t seq, const char *why)
{
    if (!b->start_failures && why)
        fprintf(stderr, "cf-bench: cannot start instance %" PRIu64 ": %s\n", seq, why);
    b->start_failures++;
    b->in_flight--;
    b->stop = true;
    /* Instances still in flight end the run when they end; with none, nothing else will. */
    if (all_done(b) || !b->in_flight)
        uv_stop(&b->loop);
}

static void on_ended(void *arg, int64_t instance_id, const char *state)
{
    struct bench *b = arg;
    bool completed = strcmp(state, "COMPLETED") == 0;
    struct slot *s = cf_imap_del(&b->flight, instance_id);
    if (!s) {
        if (b->in_start) {
            b->start_ended = true;
            b->start_ended_completed = completed;
        }
        return;
    }
    if (!completed)
        fprintf(stderr, "cf-bench: instance %" PRId64 " ended %s\n", instance_id, state);
    record_end(b, s->t0, completed);
}

static void on_incident(void *arg, int64_t instance_id, const char *activity_id, const char *type,
                        const char *message)
{
    struct bench *b = arg;
    /* The engine logs the incident itself. A run with one measures a broken model, not the
     * engine, so no more instances are started. */
    (void)instance_id;
    (void)activity_id;
    (void)type;
    (void)message;
    b->incidents++;
    b->stop = true;
}

static void on_idle(void *arg)
{
    struct bench *b = arg;
    /* Nothing is runnable yet instances are in flight: they wait for an incident to be retried
     * or for a job due later, which a no-op benchmark never should. A job due later may still
     * run (the loop keeps going while it is pending); an incident never moves by itself. */
    if (b->in_flight > 0 && !b->in_start && cf_engine_next_due(b->engine) == 0) {
        b->stuck = true;
        b->stop = true;
        uv_stop(&b->loop);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct bench *b = h->data;
    (void)signum;
    b->interrupted = true;
    b->stop = true;
    uv_stop(&b->loop);
}

static void start_direct(struct bench *b, struct slot *s)
{
    uint64_t seq = (uint64_t)(s - b->slots);
    struct cf_named_val var = {.name = "n"};
    cf_val_set_long(&var.val, (int64_t)seq);
    char err[1024];
    b->in_start = true;
    b->start_ended = false;
    int rc = cf_engine_start(b->engine, b->definition_id, NULL, &var, 1, &s->id, err, sizeof(err));
    b->in_start = false;
    cf_val_free(&var.val);
    if (rc)
        record_start_failure(b, seq, err);
    else if (b->start_ended)
        record_end(b, s->t0, b->start_ended_completed);
    else
        cf_imap_put(&b->flight, s->id, s);
}

/* Runs inside the engine's batch transaction. */
static int create_in_tx(struct cf_engine *e, void *arg)
{
    struct slot *s = arg;
    struct bench *b = s->b;
    uint64_t seq = (uint64_t)(s - b->slots);
    struct cf_named_val var = {.name = "n"};
    cf_val_set_long(&var.val, (int64_t)seq);
    char err[1024];
    int rc =
        cf_engine_tx_create_instance(e, b->definition_id, NULL, &var, 1, &s->id, err, sizeof(err));
    cf_val_free(&var.val);
    if (rc) {
        if (!b->start_failures)
            fprintf(stderr, "cf-bench: cannot create instance %" PRIu64 ": %s\n", seq, err);
        s->id = 0;
        return rc;
    }
    cf_imap_put(&b->flight, s->id, s);
    return 0;
}

/* Runs after the batch: rc is 0 when the instance was committed. */
static void created(void *arg, int rc)
{
    struct slot *s = arg;
    struct bench *b = s->b;
    if (!rc)
        return;
    /* Without an id the creation itself failed, and create_in_tx() has said why. */
    if (s->id)
        cf_imap_del(&b->flight, s->id);
    record_start_failure(b, (uint64_t)(s - b->slots), s->id ? cf_strerror(rc) : NULL);
}

static void starter_cb(uv_idle_t *h)
{
    struct bench *b = cf_container_of(h, struct bench, starter);
    /* Every free slot is filled at once. Direct starts commit one by one; the outcomes they
     * produce, and starts submitted here, are applied together in the engine's next batch. */
    while (!b->stop && b->in_flight < b->concurrency && b->started < b->n) {
        struct slot *s = &b->slots[b->started++];
        s->b = b;
        s->t0 = uv_hrtime();
        if (!b->t_first)
            b->t_first = s->t0;
        b->in_flight++;
        if (b->mode == START_TX)
            cf_engine_submit(b->engine, create_in_tx, created, s);
        else
            start_direct(b, s);
    }
    if (b->stop || b->in_flight >= b->concurrency || b->started >= b->n)
        uv_idle_stop(h);
}

static const char *default_plugin_dir(char *buf)
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
    return realpath(joined, buf) ? buf : NULL;
}

static uint64_t parse_count(const char *opt, const char *text, uint64_t max)
{
    int64_t v;
    if (cf_parse_i64(text, &v) != 0 || v < 1 || (uint64_t)v > max)
        usage_error("%s needs a whole number from 1 to %" PRIu64 ", got '%s'", opt, max, text);
    return (uint64_t)v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values. */
static double percentile_ms(const uint64_t *sorted, size_t n, double p)
{
    if (!n)
        return 0.0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1e6;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

static void remove_db(const char *path, const char *dir)
{
    /* The database, SQLite's WAL and shared-memory files, and the engine's one-engine lock. */
    const char *suffixes[] = {"", "-wal", "-shm", ".lock"};
    for (unsigned i = 0; i < CF_ARRAY_LEN(suffixes); i++) {
        char *p = cf_xasprintf("%s%s", path, suffixes[i]);
        unlink(p);
        free(p);
    }
    if (dir)
        rmdir(dir);
}

int main(int argc, char **argv)
{
    uint64_t n = DEFAULT_N, concurrency = DEFAULT_CONCURRENCY, jobs = 0;
    const char *db = NULL, *plugin_dir = NULL;
    bool sync_normal = false;
    enum start_mode mode = START_DIRECT;
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},      {"sync", required_argument, NULL, 's'},
        {"plugins", required_argument, NULL, 'p'}, {"start", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},          {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "n:c:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            n = parse_count("-n", optarg, UINT64_C(100000000));
            break;
        case 'c':
            concurrency = parse_count("-c", optarg, UINT64_C(1000000));
            break;
        case 'j':
            jobs = parse_count("-j", optarg, INT_MAX);
            break;
        case 'd':
            db = optarg;
            break;
        case 's':
            if (strcmp(optarg, "full") == 0)
                sync_normal = false;
            else if (strcmp(optarg, "normal") == 0)
                sync_normal = true;
            else
                usage_error("--sync is full or normal, not '%s'", optarg);
            break;
        case 'p':
            plugin_dir = optarg;
            break;
        case 'S':
            if (strcmp(optarg, "direct") == 0)
                mode = START_DIRECT;
            else if (strcmp(optarg, "tx") == 0)
                mode = START_TX;
            else
                usage_error("--start is direct or tx, not '%s'", optarg);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            usage_error("unknown option");
        }
    }
    if (optind != argc - 1)
        usage_error("needs exactly one BPMN FILE");
    const char *file = argv[optind];
    /* With the engine's default of 32 jobs at once, a batch would apply at most 32 task outcomes
     * while C instances wait, and the figure would measure that cap rather than the engine. */
    if (!jobs)
        jobs = concurrency > INT_MAX ? INT_MAX : concurrency;
    cf_log_set_level(CF_LOG_WARN);
    char plugin_buf[PATH_MAX];
    if (!plugin_dir)
        plugin_dir = default_plugin_dir(plugin_buf);

    uint8_t *xml = NULL;
    size_t xml_len = 0;
    char err[1024];
    if (cf_read_file(file, CF_BPMN_MAX_BYTES, &xml, &xml_len, err, sizeof(err)) != 0) {
        fprintf(stderr, "cf-bench: %s\n", err);
        return 1;
    }

    /* A fresh database every time: figures from a database that already holds earlier runs
     * would measure its growth, not the engine. */
    char *db_path, *tmp_dir = NULL;
    if (db) {
        struct stat st;
        if (stat(db, &st) == 0) {
            fprintf(stderr, "cf-bench: %s exists; the benchmark needs a new database file\n", db);
            free(xml);
            return 1;
        }
        db_path = cf_xstrdup(db);
    } else {
        const char *tmp = getenv("TMPDIR");
        tmp_dir = cf_xasprintf("%s/cf-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(tmp_dir)) {
            fprintf(stderr, "cf-bench: cannot create a temporary folder %s: %s\n", tmp_dir,
                    strerror(errno));
            free(tmp_dir);
            free(xml);
            return 1;
        }
        db_path = cf_xasprintf("%s/bench.db", tmp_dir);
    }

    struct bench *b = cf_xcalloc(1, sizeof(*b));
    b->n = n;
    b->concurrency = concurrency;
    b->mode = mode;
    b->slots = cf_xcalloc(n, sizeof(*b->slots));
    b->lat_ns = cf_xcalloc(n, sizeof(*b->lat_ns));
    cf_imap_init(&b->flight);
    int result = 1;
    uv_loop_init(&b->loop);
    struct cf_engine_options eo = {.db_path = db_path,
                                   .plugin_dir = plugin_dir,
                                   .max_concurrent_jobs = (int)jobs,
                                   .synchronous_normal = sync_normal};
    if (cf_engine_open(&b->loop, &eo, &b->engine, err, sizeof(err)) != 0) {
        fprintf(stderr, "cf-bench: %s\n", err);
        uv_loop_close(&b->loop);
        goto out;
    }
    struct cf_engine_observer obs = {
        .instance_ended = on_ended, .incident = on_incident, .idle = on_idle, .arg = b};
    cf_engine_set_observer(b->engine, &obs);
    uv_idle_init(&b->loop, &b->starter);
    uv_signal_init(&b->loop, &b->sigint);
    uv_signal_init(&b->loop, &b->sigterm);
    b->sigint.data = b->sigterm.data = b;
    uv_signal_start(&b->sigint, on_signal, SIGINT);
    uv_signal_start(&b->sigterm, on_signal, SIGTERM);
    /* Signal watchers alone must not keep the loop running once the work is done. */
    uv_unref((uv_handle_t *)&b->sigint);
    uv_unref((uv_handle_t *)&b->sigterm);

    const char *slash = strrchr(file, '/');
    struct cf_deploy_result dep;
    char *key = NULL;
    if (cf_engine_deploy(b->engine, slash ? slash + 1 : file, xml, xml_len, "", &dep) != 0) {
        struct cf_buf eb;
        cf_buf_init(&eb);
        cf_diags_format(&dep.diags, file, &eb);
        fputs(eb.data ? eb.data : "", stderr);
        cf_buf_free(&eb);
    } else if (dep.n_defs == 0) {
        fprintf(stderr, "cf-bench: %s has no executable process\n", file);
    } else {
        b->definition_id = dep.defs[0].definition_id;
        key = cf_xstrdup(dep.defs[0].key);
    }
    cf_deploy_result_free(&dep);

    uint64_t commits = 0;
    if (key) {
        struct cf_store *st = cf_engine_store(b->engine);
        /* Only the commits of the run count: opening and deploying are not per instance. */
        uint64_t commits_before = cf_store_commits(st);
        uv_idle_start(&b->starter, starter_cb);
        uv_run(&b->loop, UV_RUN_DEFAULT);
        commits = cf_store_commits(st) - commits_before;
    }
    cf_engine_close(b->engine);
    uv_close((uv_handle_t *)&b->starter, NULL);
    uv_close((uv_handle_t *)&b->sigint, NULL);
    uv_close((uv_handle_t *)&b->sigterm, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&b->loop) != 0) {
        fprintf(stderr, "cf-bench: the event loop still had open handles\n");
        free(key);
        goto out;
    }
    if (!key)
        goto out;

    /* The engine is closed, so SQLite has checkpointed the WAL into the database file. */
    off_t db_bytes = file_size(db_path);
    char *wal = cf_xasprintf("%s-wal", db_path);
    db_bytes += file_size(wal);
    free(wal);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    uint64_t not_completed = n - b->completed;
    double elapsed = b->t_last > b->t_first ? (double)(b->t_last - b->t_first) / 1e9 : 0.0;
    qsort(b->lat_ns, b->n_lat, sizeof(*b->lat_ns), cmp_u64);
    printf("file:                 %s (process %s)\n", file, key);
    printf("synchronous:          %s\n", sync_normal ? "NORMAL" : "FULL");
    printf("start:                %s\n", mode == START_TX
                                             ? "tx (cf_engine_submit, group commit)"
                                             : "direct (cf_engine_start, one commit each)");
    printf("instances:            %" PRIu64 "\n", n);
    printf("concurrency:          %" PRIu64 " instances\n", concurrency);
    printf("engine jobs:          %" PRIu64 " at once\n", jobs);
    printf("completed:            %" PRIu64 "\n", b->completed);
    printf("elapsed:              %.3f s\n", elapsed);
    printf("throughput:           %.0f instances/s\n",
           elapsed > 0 ? (double)b->completed / elapsed : 0.0);
    printf("latency p50:          %.2f ms\n", percentile_ms(b->lat_ns, b->n_lat, 50.0));
    printf("latency p99:          %.2f ms\n", percentile_ms(b->lat_ns, b->n_lat, 99.0));
    printf("latency max:          %.2f ms\n", percentile_ms(b->lat_ns, b->n_lat, 100.0));
    printf("peak RSS:             %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    printf("commits per instance: %.3f\n", (double)commits / (double)n);
    printf("database size:        %.1f MiB\n", (double)db_bytes / (1024.0 * 1024.0));
    printf("database growth:      %.0f bytes/instance\n", (double)db_bytes / (double)n);
    /* The figures first, then what went wrong, also when both go to one terminal or pipe. */
    fflush(stdout);
    if (not_completed) {
        fprintf(stderr,
                "cf-bench: %" PRIu64 " of %" PRIu64 " instances did not complete (%" PRIu64
                " ended otherwise, %" PRIu64 " not started, %" PRIu64 " still waiting%s, %" PRIu64
                " incidents)%s\n",
                not_completed, n, b->ended_otherwise, b->start_failures + (n - b->started),
                b->in_flight, b->stuck ? " with nothing runnable" : "", b->incidents,
                b->interrupted ? "; interrupted" : "");
    } else {
        result = 0;
    }
    free(key);
out:
    /* A database named with --db is the user's to inspect, whatever the outcome. */
    if (tmp_dir)
        remove_db(db_path, tmp_dir);
    free(db_path);
    free(tmp_dir);
    free(xml);
    cf_imap_free(&b->flight);
    free(b->slots);
    free(b->lat_ns);
    free(b);
    return result;
}
