/*
 * cf-wait-bench: benchmarks of the engine's wait states, in three modes.
 *
 *   async    processes/bench/five-tasks-async.bpmn (asyncBefore on all five tasks): completed
 *            instances/s, latency and SQLite commits per instance, so that the cost of a
 *            transaction boundary before every task can be compared with cf-bench's five-tasks.
 *   waiting  N instances that each stop at an intermediate timer (PT1H) or message catch event:
 *            how fast they start, peak RSS and database size with all of them waiting, and for
 *            messages how fast a sample of them is correlated by business key.
 *   timers   N instances waiting at one timeDate a few seconds ahead: the time from that moment
 *            until every instance has ended, i.e. how fast the engine acquires and fires due
 *            timers in bulk.
 *
 * The waiting and timers processes are generated here rather than kept as files, because their
 * one parameter (timer or message) is the benchmark's. Like cf-bench, this program uses only the
 * public engine API on one libuv loop and leaves batching, job execution and commits to the
 * engine; it decides only when to start the next instance. tools/bench/README.md says how to read
 * the figures.
 *
 * Exit codes: 0 when the run reached its end state, 1 when it did not (or could not be set up),
 * 2 usage.
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

#define SAMPLE_CORRELATIONS 1000
/* Timers mode: how long after the due moment the run gives up on timers that do not fire. */
#define DEADLINE_AFTER_DUE_MS 600000

static const char *usage_text =
    "usage: cf-wait-bench async   [-n N] [-c C] [--sync full|normal] [--file BPMN]\n"
    "       cf-wait-bench waiting [-n N] [--kind timer|message]\n"
    "       cf-wait-bench timers  [-n N] [--lead SECONDS]\n"
    "common options: [--db PATH] [--start direct|tx] [--sync full|normal] [--plugins DIR]\n"
    "                [-c CONCURRENCY] [--cache N]\n"
    "\n"
    "async    runs N (default 10000) instances of five-tasks-async.bpmn, asyncBefore on\n"
    "         every task, at most C (default 256) in flight: instances/s, latency p50/p99,\n"
    "         commits per instance.\n"
    "waiting  starts N (default 100000) instances that each wait at an intermediate timer\n"
    "         (PT1H) or message catch event: start rate, peak RSS and database size with all\n"
    "         waiting; with --kind message, correlates 1000 of them by business key.\n"
    "timers   starts N (default 10000) instances waiting at one timeDate LEAD seconds\n"
    "         (default 5 + N/2000) after the run starts, then measures the time from that\n"
    "         moment until all have ended, and timers fired/s.\n"
    "\n"
    "  --db PATH          database file to create and keep (must not exist); default a\n"
    "                     temporary file that is removed afterwards\n"
    "  --start direct|tx  direct: cf_engine_start(), one transaction each (default for\n"
    "                     async); tx: created in the engine's batch transaction (group\n"
    "                     commit; default for waiting and timers)\n"
    "  --sync full|normal SQLite synchronous mode (default full)\n"
    "  --cache N          the engine's max_cached_instances (default: the engine's)\n"
    "  --file BPMN        async: the process file (default processes/bench/five-tasks-async.bpmn\n"
    "                     in the working folder or the source tree above the program)\n"
    "  --plugins DIR      plug-in folder; default $CERTFLOW_PLUGINS or the plugins folder\n"
    "                     next to the folder of this program\n";

static void usage_error(const char *fmt, ...) CF_PRINTF(1, 2);

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cf-wait-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(cf-wait-bench --help for usage)\n", stderr);
    exit(2);
}

enum mode { MODE_ASYNC, MODE_WAITING, MODE_TIMERS };
enum kind { KIND_TIMER, KIND_MESSAGE };

/* The process of the waiting and timers modes: start, one catch event, end. The catch event is
 * the only thing that differs; %s is its event definition. */
static const char *wait_bpmn_fmt =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\"\n"
    "    xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n"
    "    id=\"Definitions_wait\" targetNamespace=\"http://bpmn.io/schema/bpmn\">\n"
    "  <bpmn:message id=\"Message_proceed\" name=\"Proceed\" />\n"
    "  <bpmn:process id=\"wait-bench\" isExecutable=\"true\">\n"
    "    <bpmn:startEvent id=\"Start\"><bpmn:outgoing>Flow_1</bpmn:outgoing></bpmn:startEvent>\n"
    "    <bpmn:sequenceFlow id=\"Flow_1\" sourceRef=\"Start\" targetRef=\"Wait\" />\n"
    "    <bpmn:intermediateCatchEvent id=\"Wait\">\n"
    "      <bpmn:incoming>Flow_1</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_2</bpmn:outgoing>\n"
    "      %s\n"
    "    </bpmn:intermediateCatchEvent>\n"
    "    <bpmn:sequenceFlow id=\"Flow_2\" sourceRef=\"Wait\" targetRef=\"End\" />\n"
    "    <bpmn:endEvent id=\"End\"><bpmn:incoming>Flow_2</bpmn:incoming></bpmn:endEvent>\n"
    "  </bpmn:process>\n"
    "</bpmn:definitions>\n";

static const char *timer_hour_def =
    "<bpmn:timerEventDefinition><bpmn:timeDuration xsi:type=\"bpmn:tFormalExpression\">PT1H"
    "</bpmn:timeDuration></bpmn:timerEventDefinition>";
/* One due moment for all instances, from the variable the bench sets at start, so that every
 * timer falls due at once and the engine must acquire them in bulk. */
static const char *timer_date_def =
    "<bpmn:timerEventDefinition><bpmn:timeDate xsi:type=\"bpmn:tFormalExpression\">${due}"
    "</bpmn:timeDate></bpmn:timerEventDefinition>";
static const char *message_def = "<bpmn:messageEventDefinition messageRef=\"Message_proceed\" />";

struct bench;

/* One per start asked for in tx mode, freed when the batch is done. */
struct pending {
    struct bench *b;
    uint64_t seq;
    int64_t id;
};

struct bench {
    uv_loop_t loop;
    /* Starts instances outside the engine's callbacks: the observer runs inside the engine's
     * after-commit step, and starting there would nest one engine transaction inside the
     * delivery of another's. */
    uv_idle_t starter;
    uv_signal_t sigint, sigterm;
    /* Timers mode: the engine's own timer does not keep the loop alive for a job due later (a
     * daemon has its server for that), so this one does, and ends a run whose timers never
     * fire. */
    uv_timer_t deadline;
    bool interrupted, timed_out;
    struct cf_engine *engine;
    int64_t definition_id;
    enum mode mode;
    enum kind kind;
    bool tx_start;
    uint64_t n, concurrency;
    int64_t due_ms; /* timers mode: the timeDate of every instance */

    uint64_t asked, committed, in_flight; /* starts asked for, committed, not yet committed */
    uint64_t ended, completed, start_failures, incidents;
    bool stop, stuck;
    bool all_waiting; /* every instance has been started and the engine went idle */

    /* async mode only: start time by sequence number and the instances still running, for the
     * latency. The waiting modes keep nothing per instance, so that the RSS is the engine's. */
    uint64_t *t0;
    struct cf_imap flight;
    uint64_t *lat_ns;
    size_t n_lat;
    bool in_start, start_ended, start_ended_completed;

    uint64_t t_first, t_waiting, t_last;                  /* uv_hrtime() */
    uint64_t wall_waiting, wall_first_end, wall_last_end; /* cf_now_ms() */
    /* Current RSS when 10% and all of the instances wait, for the growth per instance. */
    uint64_t rss_tenth, rss_all, rss_tenth_at;
};

static void starter_cb(uv_idle_t *h);

static uint64_t rss_now_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

static uint64_t rss_peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss;
}

static bool run_done(const struct bench *b)
{
    if (b->mode == MODE_WAITING)
        return b->all_waiting;
    return b->ended + b->start_failures == b->n;
}

static void note_end(struct bench *b, bool completed, uint64_t t0)
{
    uint64_t now = uv_hrtime();
    b->ended++;
    b->t_last = now;
    b->wall_last_end = cf_now_ms();
    if (!b->wall_first_end)
        b->wall_first_end = b->wall_last_end;
    if (completed) {
        b->completed++;
        if (b->lat_ns && t0)
            b->lat_ns[b->n_lat++] = now - t0;
    }
    if (b->mode == MODE_ASYNC) {
        b->in_flight--;
        if (!b->stop && b->asked < b->n && !uv_is_active((uv_handle_t *)&b->starter))
            uv_idle_start(&b->starter, starter_cb);
    }
    if (run_done(b)) {
        uv_timer_stop(&b->deadline);
        uv_stop(&b->loop);
    }
}

static void on_ended(void *arg, int64_t instance_id, const char *state)
{
    struct bench *b = arg;
    bool completed = strcmp(state, "COMPLETED") == 0;
    if (!completed)
        fprintf(stderr, "cf-wait-bench: instance %" PRId64 " ended %s\n", instance_id, state);
    if (b->mode == MODE_ASYNC) {
        uint64_t *t0 = cf_imap_del(&b->flight, instance_id);
        if (!t0 && b->in_start) {
            b->start_ended = true;
            b->start_ended_completed = completed;
            return;
        }
        note_end(b, completed, t0 ? *t0 : 0);
        return;
    }
    note_end(b, completed, 0);
}

static void on_incident(void *arg, int64_t instance_id, const char *activity_id, const char *type,
                        const char *message)
{
    struct bench *b = arg;
    /* The engine logs the incident itself; a run with one measures a broken model. */
    (void)instance_id;
    (void)activity_id;
    (void)type;
    (void)message;
    b->incidents++;
    b->stop = true;
}

static void deadline_cb(uv_timer_t *t)
{
    struct bench *b = cf_container_of(t, struct bench, deadline);
    b->timed_out = true;
    b->stop = true;
    uv_stop(&b->loop);
}

/* Every start committed and nothing runnable: each instance has reached its catch event. Checked
 * from the idle observer and from the starter, because the engine may report idle before the
 * last batch's done callbacks have counted its starts, and then has no reason to report again. */
static bool check_all_waiting(struct bench *b)
{
    if (b->mode == MODE_ASYNC || b->all_waiting || b->in_start ||
        b->committed + b->start_failures != b->n || b->in_flight != 0 ||
        !cf_engine_is_idle(b->engine))
        return b->all_waiting;
    b->all_waiting = true;
    b->t_waiting = uv_hrtime();
    b->wall_waiting = cf_now_ms();
    b->rss_all = rss_now_kib();
    if (b->mode == MODE_WAITING)
        uv_stop(&b->loop);
    else if (b->ended < b->n) {
        uint64_t to_due =
            (uint64_t)b->due_ms > b->wall_waiting ? (uint64_t)b->due_ms - b->wall_waiting : 0;
        uv_timer_start(&b->deadline, deadline_cb, to_due + DEADLINE_AFTER_DUE_MS, 0);
    }
    return true;
}

static void on_idle(void *arg)
{
    struct bench *b = arg;
    if (b->in_start)
        return;
    if (check_all_waiting(b))
        return;
    /* In the async mode nothing ever waits for the clock, so idle with instances in flight means
     * they are stuck behind an incident. */
    if (b->mode == MODE_ASYNC && b->in_flight > 0 && cf_engine_next_due(b->engine) == 0) {
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

static void note_committed(struct bench *b)
{
    b->committed++;
    if (b->mode != MODE_ASYNC)
        b->in_flight--;
    if (!b->rss_tenth && b->committed >= b->n / 10) {
        b->rss_tenth = rss_now_kib();
        b->rss_tenth_at = b->committed;
    }
}

static void start_failed(struct bench *b, uint64_t seq, const char *why)
{
    if (!b->start_failures && why)
        fprintf(stderr, "cf-wait-bench: cannot start instance %" PRIu64 ": %s\n", seq, why);
    b->start_failures++;
    b->in_flight--;
    b->stop = true;
    uv_stop(&b->loop);
}

/* The variables of instance `seq`: n for the async process's gateway, due for the timeDate. */
static size_t make_vars(struct bench *b, uint64_t seq, struct cf_named_val *vars)
{
    if (b->mode == MODE_ASYNC) {
        vars[0].name = "n";
        cf_val_set_long(&vars[0].val, (int64_t)seq);
        return 1;
    }
    if (b->mode == MODE_TIMERS) {
        vars[0].name = "due";
        cf_val_set_date(&vars[0].val, b->due_ms);
        return 1;
    }
    return 0;
}

static void business_key(const struct bench *b, uint64_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "wb-%" PRIu64, seq);
    (void)b;
}

static void start_direct(struct bench *b, uint64_t seq)
{
    struct cf_named_val vars[1] = {0};
    size_t nv = make_vars(b, seq, vars);
    char key[32], err[1024];
    business_key(b, seq, key, sizeof(key));
    int64_t id = 0;
    b->in_start = true;
    b->start_ended = false;
    int rc = cf_engine_start(b->engine, b->definition_id, b->kind == KIND_MESSAGE ? key : NULL,
                             vars, nv, &id, err, sizeof(err));
    b->in_start = false;
    for (size_t i = 0; i < nv; i++)
        cf_val_free(&vars[i].val);
    if (rc) {
        start_failed(b, seq, err);
        return;
    }
    note_committed(b);
    if (b->mode == MODE_ASYNC) {
        if (b->start_ended)
            note_end(b, b->start_ended_completed, b->t0[seq]);
        else
            cf_imap_put(&b->flight, id, &b->t0[seq]);
    }
}

/* Runs inside the engine's batch transaction. */
static int create_in_tx(struct cf_engine *e, void *arg)
{
    struct pending *p = arg;
    struct bench *b = p->b;
    struct cf_named_val vars[1] = {0};
    size_t nv = make_vars(b, p->seq, vars);
    char key[32], err[1024];
    business_key(b, p->seq, key, sizeof(key));
    int rc = cf_engine_tx_create_instance(e, b->definition_id, b->kind == KIND_MESSAGE ? key : NULL,
                                          vars, nv, &p->id, err, sizeof(err));
    for (size_t i = 0; i < nv; i++)
        cf_val_free(&vars[i].val);
    if (rc) {
        if (!b->start_failures)
            fprintf(stderr, "cf-wait-bench: cannot create instance %" PRIu64 ": %s\n", p->seq, err);
        p->id = 0;
        return rc;
    }
    if (b->mode == MODE_ASYNC)
        cf_imap_put(&b->flight, p->id, &b->t0[p->seq]);
    return 0;
}

static void created(void *arg, int rc)
{
    struct pending *p = arg;
    struct bench *b = p->b;
    if (rc) {
        if (p->id && b->mode == MODE_ASYNC)
            cf_imap_del(&b->flight, p->id);
        start_failed(b, p->seq, p->id ? cf_strerror(rc) : NULL);
    } else {
        note_committed(b);
    }
    free(p);
    if (!b->stop && b->asked < b->n && !uv_is_active((uv_handle_t *)&b->starter))
        uv_idle_start(&b->starter, starter_cb);
}

static void starter_cb(uv_idle_t *h)
{
    struct bench *b = cf_container_of(h, struct bench, starter);
    /* In the waiting modes an instance is "in flight" only until its start commits; what keeps
     * the engine's queues bounded then is its own backlog of start jobs, which is checked here
     * so that 100,000 starts do not pile up as 100,000 ready jobs in memory. */
    if (b->mode != MODE_ASYNC) {
        struct cf_engine_stats st;
        cf_engine_stats(b->engine, &st);
        if (st.items + st.ready + (size_t)st.running >= b->concurrency)
            return;
    }
    while (!b->stop && b->in_flight < b->concurrency && b->asked < b->n) {
        uint64_t seq = b->asked++;
        uint64_t now = uv_hrtime();
        if (b->t0)
            b->t0[seq] = now;
        if (!b->t_first)
            b->t_first = now;
        b->in_flight++;
        if (b->tx_start) {
            struct pending *p = cf_xcalloc(1, sizeof(*p));
            p->b = b;
            p->seq = seq;
            cf_engine_submit(b->engine, create_in_tx, created, p);
        } else {
            start_direct(b, seq);
        }
    }
    /* In the waiting modes the starter keeps turning after the last start until every instance
     * waits: without it, nothing would keep the loop alive once the engine's jobs are done. */
    if (b->mode != MODE_ASYNC && b->asked >= b->n && !b->stop) {
        if (check_all_waiting(b))
            uv_idle_stop(h);
        return;
    }
    if (b->stop || b->asked >= b->n || (b->tx_start && b->in_flight >= b->concurrency))
        uv_idle_stop(h);
    else if (b->mode == MODE_ASYNC && b->in_flight >= b->concurrency)
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

/* The async process: in the working folder (the source tree, as the README runs it), else in
 * the source tree above the build folder that holds this program (build/<dir>/bin). */
static char *default_async_file(void)
{
    const char *rel = "processes/bench/five-tasks-async.bpmn";
    struct stat st;
    if (stat(rel, &st) == 0)
        return cf_xstrdup(rel);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char *p = cf_xasprintf("%s/../../../%s", exe, rel);
            if (stat(p, &st) == 0)
                return p;
            free(p);
        }
    }
    return cf_xstrdup(rel);
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

static off_t wal_size(const char *db_path)
{
    char *wal = cf_xasprintf("%s-wal", db_path);
    off_t s = file_size(wal);
    free(wal);
    return s;
}

static void remove_db(const char *path, const char *dir)
{
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (unsigned i = 0; i < CF_ARRAY_LEN(suffixes); i++) {
        char *p = cf_xasprintf("%s%s", path, suffixes[i]);
        unlink(p);
        free(p);
    }
    if (dir)
        rmdir(dir);
}

static double secs(uint64_t from_ns, uint64_t to_ns)
{
    return to_ns > from_ns ? (double)(to_ns - from_ns) / 1e9 : 0.0;
}

static double mib(double bytes)
{
    return bytes / (1024.0 * 1024.0);
}

/* Correlates a sample of the waiting instances, spread over the whole range so that the lookup
 * by business key does not profit from recently written pages. Each correlation is one
 * transaction, as the REST API makes it. Returns the number delivered. */
static uint64_t correlate_sample(struct bench *b, uint64_t sample, double *elapsed)
{
    uint64_t ok = 0, stride = b->n / sample;
    uint64_t t0 = uv_hrtime();
    for (uint64_t i = 0; i < sample; i++) {
        char key[32], err[1024];
        business_key(b, i * stride, key, sizeof(key));
        struct cf_correlation c = {.message = "Proceed", .business_key = key};
        int64_t id;
        size_t got = 0;
        int rc = cf_engine_correlate(b->engine, &c, &id, 1, &got, err, sizeof(err));
        if (rc) {
            fprintf(stderr, "cf-wait-bench: correlating %s: %s\n", key, err);
            break;
        }
        ok += got;
    }
    *elapsed = secs(t0, uv_hrtime());
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage_error("needs a mode: async, waiting or timers");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    enum mode mode;
    if (strcmp(argv[1], "async") == 0)
        mode = MODE_ASYNC;
    else if (strcmp(argv[1], "waiting") == 0)
        mode = MODE_WAITING;
    else if (strcmp(argv[1], "timers") == 0)
        mode = MODE_TIMERS;
    else
        usage_error("unknown mode '%s': async, waiting or timers", argv[1]);

    uint64_t n = mode == MODE_WAITING ? 100000 : 10000;
    uint64_t concurrency = 256, lead_s = 0, cache = 0;
    const char *db = NULL, *plugin_dir = NULL;
    char *file = NULL;
    bool sync_normal = false, tx_start = mode != MODE_ASYNC;
    enum kind kind = KIND_TIMER;
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},      {"sync", required_argument, NULL, 's'},
        {"plugins", required_argument, NULL, 'p'}, {"start", required_argument, NULL, 'S'},
        {"kind", required_argument, NULL, 'k'},    {"lead", required_argument, NULL, 'l'},
        {"cache", required_argument, NULL, 'C'},   {"file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},          {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "n:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            n = parse_count("-n", optarg, UINT64_C(100000000));
            break;
        case 'c':
            concurrency = parse_count("-c", optarg, UINT64_C(1000000));
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
                tx_start = false;
            else if (strcmp(optarg, "tx") == 0)
                tx_start = true;
            else
                usage_error("--start is direct or tx, not '%s'", optarg);
            break;
        case 'k':
            if (strcmp(optarg, "timer") == 0)
                kind = KIND_TIMER;
            else if (strcmp(optarg, "message") == 0)
                kind = KIND_MESSAGE;
            else
                usage_error("--kind is timer or message, not '%s'", optarg);
            break;
        case 'l':
            lead_s = parse_count("--lead", optarg, 86400);
            break;
        case 'C':
            cache = parse_count("--cache", optarg, INT_MAX);
            break;
        case 'f':
            free(file);
            file = cf_xstrdup(optarg);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            usage_error("unknown option");
        }
    }
    if (optind != argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (mode != MODE_WAITING && kind == KIND_MESSAGE)
        usage_error("--kind is for the waiting mode");
    if (mode == MODE_TIMERS && !lead_s)
        lead_s = 5 + n / 2000;
    cf_log_set_level(CF_LOG_WARN);
    char plugin_buf[PATH_MAX];
    if (!plugin_dir)
        plugin_dir = default_plugin_dir(plugin_buf);

    uint8_t *xml = NULL;
    size_t xml_len = 0;
    char err[1024];
    const char *resource;
    if (mode == MODE_ASYNC) {
        if (!file)
            file = default_async_file();
        if (cf_read_file(file, CF_BPMN_MAX_BYTES, &xml, &xml_len, err, sizeof(err)) != 0) {
            fprintf(stderr, "cf-wait-bench: %s\n", err);
            free(file);
            return 1;
        }
        const char *slash = strrchr(file, '/');
        resource = slash ? slash + 1 : file;
    } else {
        const char *def = mode == MODE_TIMERS    ? timer_date_def
                          : kind == KIND_MESSAGE ? message_def
                                                 : timer_hour_def;
        xml = (uint8_t *)cf_xasprintf(wait_bpmn_fmt, def);
        xml_len = strlen((char *)xml);
        resource = "wait-bench.bpmn";
    }

    /* A fresh database every time: figures from one that holds earlier runs would measure its
     * growth, not the engine. */
    char *db_path, *tmp_dir = NULL;
    if (db) {
        struct stat st;
        if (stat(db, &st) == 0) {
            fprintf(stderr, "cf-wait-bench: %s exists; the benchmark needs a new database file\n",
                    db);
            free(xml);
            free(file);
            return 1;
        }
        db_path = cf_xstrdup(db);
    } else {
        const char *tmp = getenv("TMPDIR");
        tmp_dir = cf_xasprintf("%s/cf-wait-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(tmp_dir)) {
            fprintf(stderr, "cf-wait-bench: cannot create a temporary folder %s: %s\n", tmp_dir,
                    strerror(errno));
            free(tmp_dir);
            free(xml);
            free(file);
            return 1;
        }
        db_path = cf_xasprintf("%s/bench.db", tmp_dir);
    }

    struct bench *b = cf_xcalloc(1, sizeof(*b));
    b->n = n;
    b->concurrency = concurrency;
    b->mode = mode;
    b->kind = kind;
    b->tx_start = tx_start;
    if (mode == MODE_ASYNC) {
        b->t0 = cf_xcalloc(n, sizeof(*b->t0));
        b->lat_ns = cf_xcalloc(n, sizeof(*b->lat_ns));
    }
    cf_imap_init(&b->flight);
    int result = 1;
    uv_loop_init(&b->loop);
    /* As in cf-bench: with the engine's default of 32 jobs at once, the figure would measure
     * that cap rather than the engine. */
    struct cf_engine_options eo = {.db_path = db_path,
                                   .plugin_dir = plugin_dir,
                                   .max_concurrent_jobs = (int)concurrency,
                                   .synchronous_normal = sync_normal,
                                   .max_cached_instances = (int)cache};
    if (cf_engine_open(&b->loop, &eo, &b->engine, err, sizeof(err)) != 0) {
        fprintf(stderr, "cf-wait-bench: %s\n", err);
        uv_loop_close(&b->loop);
        goto out;
    }
    struct cf_engine_observer obs = {
        .instance_ended = on_ended, .incident = on_incident, .idle = on_idle, .arg = b};
    cf_engine_set_observer(b->engine, &obs);
    uv_idle_init(&b->loop, &b->starter);
    uv_timer_init(&b->loop, &b->deadline);
    uv_signal_init(&b->loop, &b->sigint);
    uv_signal_init(&b->loop, &b->sigterm);
    b->sigint.data = b->sigterm.data = b;
    uv_signal_start(&b->sigint, on_signal, SIGINT);
    uv_signal_start(&b->sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&b->sigint);
    uv_unref((uv_handle_t *)&b->sigterm);

    struct cf_deploy_result dep;
    char *key = NULL;
    if (cf_engine_deploy(b->engine, resource, xml, xml_len, "", &dep) != 0) {
        struct cf_buf eb;
        cf_buf_init(&eb);
        cf_diags_format(&dep.diags, resource, &eb);
        fputs(eb.data ? eb.data : "", stderr);
        cf_buf_free(&eb);
    } else if (dep.n_defs == 0) {
        fprintf(stderr, "cf-wait-bench: %s has no executable process\n", resource);
    } else {
        b->definition_id = dep.defs[0].definition_id;
        key = cf_xstrdup(dep.defs[0].key);
    }
    cf_deploy_result_free(&dep);

    uint64_t commits = 0, commits_to_wait = 0, rss_peak_waiting = 0;
    off_t db_waiting = 0, wal_waiting = 0;
    uint64_t correlated = 0, sample = 0;
    double corr_elapsed = 0.0;
    if (key) {
        struct cf_store *st = cf_engine_store(b->engine);
        uint64_t commits_before = cf_store_commits(st);
        /* Rounded up to a whole second so that the timeDate text is exact. */
        b->due_ms = (int64_t)((cf_now_ms() + lead_s * 1000 + 999) / 1000 * 1000);
        uv_idle_start(&b->starter, starter_cb);
        uv_run(&b->loop, UV_RUN_DEFAULT);
        commits_to_wait = cf_store_commits(st) - commits_before;
        if (b->all_waiting) {
            rss_peak_waiting = rss_peak_kib();
            db_waiting = file_size(db_path);
            wal_waiting = wal_size(db_path);
        }
        if (mode == MODE_WAITING && b->all_waiting && kind == KIND_MESSAGE && !b->stop) {
            sample = n < SAMPLE_CORRELATIONS ? n : SAMPLE_CORRELATIONS;
            correlated = correlate_sample(b, sample, &corr_elapsed);
            /* The correlated instances end in the engine's next turns. */
            uv_run(&b->loop, UV_RUN_NOWAIT);
        }
        commits = cf_store_commits(st) - commits_before;
    }
    cf_engine_close(b->engine);
    uv_close((uv_handle_t *)&b->starter, NULL);
    uv_close((uv_handle_t *)&b->deadline, NULL);
    uv_close((uv_handle_t *)&b->sigint, NULL);
    uv_close((uv_handle_t *)&b->sigterm, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&b->loop) != 0) {
        fprintf(stderr, "cf-wait-bench: the event loop still had open handles\n");
        free(key);
        goto out;
    }
    if (!key)
        goto out;

    off_t db_closed = file_size(db_path) + wal_size(db_path);
    uint64_t peak = rss_peak_kib();
    printf("mode:                 %s%s\n", argv[1],
           mode != MODE_WAITING   ? ""
           : kind == KIND_MESSAGE ? " (message catch)"
                                  : " (timer catch, PT1H)");
    printf("process:              %s (%s)\n", key, mode == MODE_ASYNC ? file : "generated");
    printf("synchronous:          %s\n", sync_normal ? "NORMAL" : "FULL");
    printf("start:                %s\n", tx_start ? "tx (cf_engine_submit, group commit)"
                                                  : "direct (cf_engine_start, one commit each)");
    printf("instances:            %" PRIu64 "\n", n);
    printf("concurrency:          %" PRIu64 "\n", concurrency);
    bool ok = false;
    if (mode == MODE_ASYNC) {
        double elapsed = secs(b->t_first, b->t_last);
        qsort(b->lat_ns, b->n_lat, sizeof(*b->lat_ns), cmp_u64);
        printf("completed:            %" PRIu64 "\n", b->completed);
        printf("elapsed:              %.3f s\n", elapsed);
        printf("throughput:           %.0f instances/s\n",
               elapsed > 0 ? (double)b->completed / elapsed : 0.0);
        printf("latency p50:          %.2f ms\n", percentile_ms(b->lat_ns, b->n_lat, 50.0));
        printf("latency p99:          %.2f ms\n", percentile_ms(b->lat_ns, b->n_lat, 99.0));
        printf("latency max:          %.2f ms\n", percentile_ms(b->lat_ns, b->n_lat, 100.0));
        printf("commits per instance: %.3f\n", (double)commits / (double)n);
        printf("peak RSS:             %.1f MiB\n", (double)peak / 1024.0);
        printf("database size:        %.1f MiB\n", mib((double)db_closed));
        ok = b->completed == n;
    } else {
        double start_s = secs(b->t_first, b->t_waiting);
        printf("all waiting:          %s\n", b->all_waiting ? "yes" : "no");
        printf("time to start:        %.3f s (until every instance waits)\n", start_s);
        printf("start rate:           %.0f instances/s\n",
               start_s > 0 ? (double)b->committed / start_s : 0.0);
        printf("commits to start:     %.3f per instance\n", (double)commits_to_wait / (double)n);
        printf("peak RSS waiting:     %.1f MiB\n", (double)rss_peak_waiting / 1024.0);
        if (b->rss_tenth && b->rss_all && b->committed > b->rss_tenth_at)
            printf("RSS growth:           %.0f bytes/instance (current RSS %.1f MiB at %" PRIu64
                   " started, %.1f MiB at all)\n",
                   (double)((int64_t)b->rss_all - (int64_t)b->rss_tenth) * 1024.0 /
                       (double)(b->committed - b->rss_tenth_at),
                   (double)b->rss_tenth / 1024.0, b->rss_tenth_at, (double)b->rss_all / 1024.0);
        printf("database waiting:     %.1f MiB + %.1f MiB wal (%.0f bytes/instance)\n",
               mib((double)db_waiting), mib((double)wal_waiting),
               (double)(db_waiting + wal_waiting) / (double)n);
        printf("database closed:      %.1f MiB\n", mib((double)db_closed));
        ok = b->all_waiting;
        if (mode == MODE_WAITING && kind == KIND_MESSAGE) {
            printf("correlated:           %" PRIu64 " of %" PRIu64 "\n", correlated, sample);
            printf("correlation rate:     %.0f correlations/s (one transaction each)\n",
                   corr_elapsed > 0 ? (double)correlated / corr_elapsed : 0.0);
            ok = ok && correlated == sample;
        }
        if (mode == MODE_TIMERS) {
            bool early = b->all_waiting && b->wall_waiting <= (uint64_t)b->due_ms;
            double fire_s = b->wall_last_end > (uint64_t)b->due_ms
                                ? (double)(b->wall_last_end - (uint64_t)b->due_ms) / 1e3
                                : 0.0;
            printf("waiting before due:   %s\n", early ? "yes" : "no (raise --lead)");
            printf("ended:                %" PRIu64 "\n", b->ended);
            printf("first end after due:  %.3f s\n",
                   b->wall_first_end ? ((double)b->wall_first_end - (double)b->due_ms) / 1e3 : 0.0);
            printf("all ended after due:  %.3f s\n", fire_s);
            printf("timer rate:           %.0f timers fired/s\n",
                   fire_s > 0 ? (double)b->ended / fire_s : 0.0);
            printf("commits total:        %.3f per instance\n", (double)commits / (double)n);
            ok = ok && early && b->completed == n;
        }
        printf("peak RSS:             %.1f MiB\n", (double)peak / 1024.0);
    }
    fflush(stdout);
    if (!ok)
        fprintf(stderr,
                "cf-wait-bench: the run did not reach its end (%" PRIu64 " started, %" PRIu64
                " ended, %" PRIu64 " start failures, %" PRIu64 " incidents%s%s%s)\n",
                b->committed, b->ended, b->start_failures, b->incidents, b->stuck ? ", stuck" : "",
                b->timed_out ? ", timed out" : "", b->interrupted ? ", interrupted" : "");
    result = ok ? 0 : 1;
    free(key);
out:
    if (tmp_dir)
        remove_db(db_path, tmp_dir);
    free(db_path);
    free(tmp_dir);
    free(xml);
    free(file);
    cf_imap_free(&b->flight);
    free(b->t0);
    free(b->lat_ns);
    free(b);
    return result;
}
