/*
 * The demo module: tasks that exercise the engine rather than do certificate work. They back the
 * scenario tests and the examples in the manual.
 *   setVariablesTask  sets process variables from `name[:type]=value` lines, and with delayMs > 0
 *                     completes later from a worker thread, to exercise asynchronous completion;
 *                     with keyLog it appends each call's idempotency key to a file (crash tests).
 *   throwErrorTask    ends its call the way its `mode` says (BPMN error, technical failure that is
 *                     or is not retryable, completion), to exercise error routing, retries and
 *                     incidents; its secret parameter proves that secrets never leak.
 * Like every plug-in it sees only plugin.h; checking parameter values against the schema below
 * is the host's job, so the checks here only guard against a host that skipped them.
 */
#include <certflow/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEMO_VERSION "0.1.0"

/* Messages handed to the host are copied by it, so a buffer on the stack is enough. */
#define MSG_MAX 512

/* A line is quoted in a message up to this many bytes. */
#define QUOTE_MAX 60

#define DEFAULT_ERROR_CODE "DemoError"
#define DEFAULT_ERROR_MESSAGE "raised on purpose by throwErrorTask"

CF_PLUGIN_EXPORT const struct cf_module *cf_plugin_init(const struct cf_host *host);

/* ---- setVariablesTask ---- */

static int is_identifier(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    }
    return 1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static const struct {
    const char *name;
    enum cf_value_type type;
} value_types[] = {
    {"String", CF_VALUE_STRING},   {"Long", CF_VALUE_LONG}, {"Double", CF_VALUE_DOUBLE},
    {"Boolean", CF_VALUE_BOOLEAN}, {"Json", CF_VALUE_JSON}, {"Null", CF_VALUE_NULL},
};

/* Turns one line (modified in place) into a variable name and a value that borrows from the line.
 * Returns NULL, or what is wrong with the line. */
static const char *parse_line(char *line, const char **name, struct cf_value *v)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return "expected name=value or name:type=value";
    *eq = '\0';
    char *value = trim(eq + 1);
    const char *type = "String";
    char *colon = strchr(line, ':');
    if (colon) {
        *colon = '\0';
        type = trim(colon + 1);
    }
    *name = trim(line);
    if (!is_identifier(*name))
        return "the variable name must be a letter or '_', then letters, digits or '_'";

    size_t t = 0;
    while (t < sizeof(value_types) / sizeof(value_types[0]) && strcmp(value_types[t].name, type))
        t++;
    if (t == sizeof(value_types) / sizeof(value_types[0]))
        return "the type must be one of String, Long, Double, Boolean, Json, Null";

    memset(v, 0, sizeof(*v));
    v->type = value_types[t].type;
    char *end;
    switch (v->type) {
    case CF_VALUE_STRING:
    case CF_VALUE_JSON:
        if (v->type == CF_VALUE_JSON && !*value)
            return "a Json value cannot be empty";
        v->str = value;
        v->len = strlen(value);
        break;
    case CF_VALUE_LONG:
        errno = 0;
        v->l = strtoll(value, &end, 10);
        if (!*value || *end || errno)
            return "a Long value must be a decimal integer that fits in 64 bits";
        break;
    case CF_VALUE_DOUBLE:
        errno = 0;
        v->d = strtod(value, &end);
        if (!*value || *end || errno || !isfinite(v->d))
            return "a Double value must be a finite decimal number";
        break;
    case CF_VALUE_BOOLEAN:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
            return "a Boolean value must be true or false";
        v->b = value[0] == 't';
        break;
    case CF_VALUE_NULL:
        if (*value)
            return "a Null variable takes no value (write name:Null=)";
        break;
    default:
        return "unsupported type";
    }
    return NULL;
}

/* Sets one variable per non-blank line. Returns 0, or fails the call and returns -1. */
static int set_variables(struct cf_call *call, const char *text)
{
    const struct cf_host *h = call->host;
    char msg[MSG_MAX];
    size_t lineno = 0;
    for (const char *s = text; *s;) {
        const char *start = s;
        size_t len = strcspn(s, "\n");
        lineno++;
        char *line = malloc(len + 1);
        if (!line) {
            h->fail(call, 1, "out of memory");
            return -1;
        }
        memcpy(line, s, len);
        line[len] = '\0';
        s += len + (s[len] == '\n');

        const char *name;
        struct cf_value v;
        const char *why = NULL;
        if (*trim(line)) {
            why = parse_line(line, &name, &v);
            if (!why && h->var_set(call, name, &v) < 0)
                why = "the engine refused the value";
        }
        if (why) {
            /* Quote the line from the text, as written: parsing has cut up the copy. */
            size_t shown = len > 0 && start[len - 1] == '\r' ? len - 1 : len;
            shown = shown < QUOTE_MAX ? shown : QUOTE_MAX;
            snprintf(msg, sizeof(msg), "parameter 'variables', line %zu: %s (line: '%.*s%s')",
                     lineno, why, (int)shown, start, len > QUOTE_MAX ? "..." : "");
            free(line);
            h->fail(call, 0, msg);
            return -1;
        }
        free(line);
    }
    return 0;
}

struct delay {
    long long ms;
};

/* Runs on a worker thread: the point is to block there instead of on the loop. */
static void delay_work(void *arg)
{
    const struct delay *d = arg;
    struct timespec ts = {(time_t)(d->ms / 1000), (long)(d->ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void delay_after(struct cf_call *call, void *arg)
{
    free(arg);
    call->host->complete(call);
}

/* Appends "KEY INSTANCE ACTIVITY" to the file `path`, one line per call, in one write() on a
 * file opened with O_APPEND, so that lines of calls from several processes never mix. The write
 * is small and local: a test aid, not something a real task would do on the loop thread. */
static int append_key(struct cf_call *call, const char *path, char *msg, size_t msglen)
{
    const struct cf_host *h = call->host;
    const char *key = h->idempotency_key(call);
    char line[MSG_MAX];
    int n = snprintf(line, sizeof(line), "%s %s %s\n", key ? key : "-", h->instance_id(call),
                     h->activity_id(call));
    if (n < 0 || (size_t)n >= sizeof(line)) {
        snprintf(msg, msglen, "parameter 'keyLog': the line for this call is too long");
        return -1;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(msg, msglen, "parameter 'keyLog': cannot open %.*s: %s", QUOTE_MAX, path,
                 strerror(errno));
        return -1;
    }
    ssize_t w = write(fd, line, (size_t)n);
    int saved = errno;
    close(fd);
    if (w != n) {
        snprintf(msg, msglen, "parameter 'keyLog': cannot write to %.*s: %s", QUOTE_MAX, path,
                 w < 0 ? strerror(saved) : "short write");
        return -1;
    }
    return 0;
}

static void set_variables_execute(struct cf_call *call)
{
    const struct cf_host *h = call->host;
    const char *text = h->param(call, "variables");
    const char *delay_text = h->param(call, "delayMs");
    const char *key_log = h->param(call, "keyLog");
    long long ms = 0;
    if (delay_text) {
        char *end;
        errno = 0;
        ms = strtoll(delay_text, &end, 10);
        if (!*delay_text || *end || errno || ms < 0) {
            h->fail(call, 0, "parameter 'delayMs' must be a decimal integer of 0 or more");
            return;
        }
    }
    if (!text) {
        h->fail(call, 0, "parameter 'variables' is not set");
        return;
    }
    if (key_log && *key_log) {
        char msg[MSG_MAX];
        if (append_key(call, key_log, msg, sizeof(msg)) != 0) {
            h->fail(call, 0, msg);
            return;
        }
    }
    if (set_variables(call, text) != 0)
        return;
    if (ms == 0) {
        h->complete(call);
        return;
    }
    struct delay *d = malloc(sizeof(*d));
    if (!d) {
        h->fail(call, 1, "out of memory");
        return;
    }
    d->ms = ms;
    if (h->queue_work(call, delay_work, delay_after, d) != 0) {
        free(d);
        h->fail(call, 1, "could not queue the delay on a worker thread");
    }
}

static const struct cf_param_def set_variables_params[] = {
    {
        .size = sizeof(struct cf_param_def),
        .name = "variables",
        .type = CF_PARAM_TEXT,
        .flags = CF_PARAM_MANDATORY,
        .description = "The variables to set, one per line as name=value or name:type=value, "
                       "where type is String (the default), Long, Double, Boolean, Json or Null; "
                       "blanks around names, types and values and blank lines are ignored.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "delayMs",
        .type = CF_PARAM_INTEGER,
        .default_value = "0",
        .description = "Milliseconds to wait on a worker thread before completing, which makes "
                       "the call complete asynchronously; 0 completes at once.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "keyLog",
        .type = CF_PARAM_STRING,
        .description = "For tests: a file to which each call appends a line with its idempotency "
                       "key, process instance and activity, before it does anything else.",
    },
    {.size = 0, .name = NULL},
};

static const struct cf_task_def set_variables_task = {
    .size = sizeof(struct cf_task_def),
    .name = "setVariablesTask",
    .summary = "Sets process variables from name=value lines and completes, at once or after a "
               "delay.",
    .params = set_variables_params,
    .execute = set_variables_execute,
};

/* ---- throwErrorTask ---- */

static void throw_error_execute(struct cf_call *call)
{
    const struct cf_host *h = call->host;
    const char *mode = h->param(call, "mode");
    const char *code = h->param(call, "errorCode");
    const char *message = h->param(call, "errorMessage");
    if (!code || !*code)
        code = DEFAULT_ERROR_CODE;
    if (!message)
        message = DEFAULT_ERROR_MESSAGE;

    if (!mode) {
        h->fail(call, 0, "parameter 'mode' is not set");
    } else if (strcmp(mode, "error") == 0) {
        h->throw_error(call, code, message);
    } else if (strcmp(mode, "fail") == 0) {
        h->fail(call, 0, message);
    } else if (strcmp(mode, "fail-retryable") == 0) {
        h->fail(call, 1, message);
    } else if (strcmp(mode, "complete") == 0) {
        h->complete(call);
    } else {
        char msg[MSG_MAX];
        snprintf(msg, sizeof(msg),
                 "parameter 'mode' must be one of: error, fail, fail-retryable, complete; got "
                 "'%.*s'",
                 QUOTE_MAX, mode);
        h->fail(call, 0, msg);
    }
}

static const char *const throw_error_modes[] = {"error", "fail", "fail-retryable", "complete",
                                                NULL};

static const struct cf_param_def throw_error_params[] = {
    {
        .size = sizeof(struct cf_param_def),
        .name = "mode",
        .type = CF_PARAM_STRING,
        .flags = CF_PARAM_MANDATORY,
        .valid_values = throw_error_modes,
        .description = "How the call ends: error throws a BPMN error, fail reports a technical "
                       "failure that is not retried, fail-retryable one that is, and complete "
                       "completes the call.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "errorCode",
        .type = CF_PARAM_STRING,
        .default_value = DEFAULT_ERROR_CODE,
        .description = "The code of the BPMN error thrown in mode error, which error boundary "
                       "events match against their errorCode.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "errorMessage",
        .type = CF_PARAM_STRING,
        .default_value = DEFAULT_ERROR_MESSAGE,
        .description = "The message of the BPMN error or technical failure.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "secretToken",
        .type = CF_PARAM_STRING,
        .flags = CF_PARAM_SECRET,
        .description = "A secret that the task never reads; tests set it to prove that certflow "
                       "never shows a secret parameter in logs, history, messages or API output.",
    },
    {.size = 0, .name = NULL},
};

static const char *const throw_error_aliases[] = {"throwBpmnErrorTask", NULL};

static const char *const throw_error_codes[] = {"DemoError", "CaConnectionFailed",
                                                "CaRequestFailed", "CommonError", NULL};

static const struct cf_task_def throw_error_task = {
    .size = sizeof(struct cf_task_def),
    .name = "throwErrorTask",
    .aliases = throw_error_aliases,
    .summary = "Ends its call the way its mode says: with a BPMN error, a technical failure or a "
               "completion.",
    .params = throw_error_params,
    .error_codes = throw_error_codes,
    .execute = throw_error_execute,
};

/* ---- the module ---- */

static const struct cf_task_def *const demo_tasks[] = {&set_variables_task, &throw_error_task,
                                                       NULL};

static const struct cf_module demo_module = {
    .size = sizeof(struct cf_module),
    .abi_major = CF_PLUGIN_ABI_MAJOR,
    .abi_minor = CF_PLUGIN_ABI_MINOR,
    .name = "demo",
    .version = DEMO_VERSION,
    .tasks = demo_tasks,
};

const struct cf_module *cf_plugin_init(const struct cf_host *host)
{
    (void)host;
    return &demo_module;
}
