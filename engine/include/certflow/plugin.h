/*
 * plugin.h: the whole plug-in ABI of certflow. A plug-in is a shared object that includes only
 * this header and exports one function, cf_plugin_init(), returning a module: its name, version,
 * and a NULL-terminated list of task definitions. One module may provide several tasks, and a task
 * may have aliases (deprecated names that still resolve, with a warning at deploy).
 *
 * Calls. A BPMN service task with camunda:delegateExpression="${name}" calls the task `name`.
 * The host calls execute() on its event-loop thread; execute() must not block. The call ends
 * exactly once, now or later, with one of complete(), throw_error() (a BPMN error: routed to error
 * boundary events, never retried) or fail() (a technical failure: retried by the engine when
 * `retryable`, otherwise an incident). A second ending is ignored and logged as a plug-in bug.
 * Slow or blocking work goes to queue_work(), which runs it on a worker thread.
 *
 * Ownership. Every pointer the host passes (parameters, variables, keys) is borrowed and valid
 * until the call ends. Values given to the host (var_set, messages) are copied by the host
 * before the function returns. Definition structs (module, tasks, parameters) are owned by the
 * plug-in and must stay valid until the library is unloaded; they are normally static const.
 *
 * Compatibility. Structs that cross the boundary start with their size, and new fields are only
 * ever added at the end. The host refuses a module whose abi_major differs from its own, and
 * accepts any abi_minor, reading only fields that the module's struct sizes show it has.
 * Arrays of parameter definitions are stepped by the `size` of their first element.
 *
 * Secrets. A parameter flagged CF_PARAM_SECRET is never printed by the host (logs, history,
 * API output, error messages). A plug-in must not copy a secret into variables or messages.
 */
#ifndef CERTFLOW_PLUGIN_H
#define CERTFLOW_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CF_PLUGIN_ABI_MAJOR 1
#define CF_PLUGIN_ABI_MINOR 1
#define CF_PLUGIN_INIT_SYMBOL "cf_plugin_init"

#if defined(__GNUC__)
#define CF_PLUGIN_EXPORT __attribute__((visibility("default")))
#define CF_PLUGIN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CF_PLUGIN_EXPORT
#define CF_PLUGIN_PRINTF(a, b)
#endif

/* Types of process variables, as Camunda 7 names them: String, Long, Double, Boolean, Bytes,
 * Json, Date, Null. Numbering is part of the ABI. */
enum cf_value_type {
    CF_VALUE_NULL = 0,
    CF_VALUE_STRING = 1,
    CF_VALUE_LONG = 2,
    CF_VALUE_DOUBLE = 3,
    CF_VALUE_BOOLEAN = 4,
    CF_VALUE_BYTES = 5,
    CF_VALUE_JSON = 6, /* text of a JSON document in `str` */
    CF_VALUE_DATE = 7  /* milliseconds since the epoch, UTC, in `l` */
};

/* A borrowed view of a value. For STRING and JSON, `str` is NUL-terminated and `len` its length;
 * for BYTES, `bytes`/`len`; LONG and DATE use `l`; DOUBLE `d`; BOOLEAN `b` (0 or 1). */
struct cf_value {
    enum cf_value_type type;
    const char *str;
    const uint8_t *bytes;
    size_t len;
    int64_t l;
    double d;
    int b;
};

enum cf_param_type {
    CF_PARAM_STRING = 0,
    CF_PARAM_BOOLEAN = 1,  /* "true" or "false" */
    CF_PARAM_INTEGER = 2,  /* decimal */
    CF_PARAM_VARIABLE = 3, /* the name of a process variable */
    CF_PARAM_TEXT = 4      /* multi-line text */
};

#define CF_PARAM_MANDATORY 0x1u
#define CF_PARAM_SECRET 0x2u

struct cf_param_def {
    size_t size; /* sizeof(struct cf_param_def) */
    const char *name;
    enum cf_param_type type;
    unsigned flags;                  /* CF_PARAM_MANDATORY | CF_PARAM_SECRET */
    const char *const *valid_values; /* NULL-terminated list, or NULL for any value */
    const char *default_value;       /* used when neither admin nor BPMN sets it; may be NULL */
    const char *description;         /* one sentence for the manual and element templates */
};

/* Task flags. */
#define CF_TASK_EXTRA_PARAMS 0x1u /* accepts parameters beyond `params` (dynamic attributes) */

struct cf_call;
struct cf_host;

struct cf_task_def {
    size_t size; /* sizeof(struct cf_task_def) */
    const char *name;
    const char *const *aliases;        /* deprecated names, NULL-terminated, or NULL */
    const char *summary;               /* one sentence */
    const struct cf_param_def *params; /* terminated by an entry whose name is NULL */
    const char *const *error_codes;    /* BPMN error codes it may throw, NULL-terminated, or NULL */
    unsigned flags;
    /* Starts a call. Must end it exactly once, now or later, through the host. */
    void (*execute)(struct cf_call *call);
    /* Optional: the host gives up on a call still running (timeout, instance canceled, shutdown).
     * The plug-in stops what it can; any ending it makes afterwards is ignored. */
    void (*cancel)(struct cf_call *call);
};

struct cf_module {
    size_t size; /* sizeof(struct cf_module) */
    uint32_t abi_major;
    uint32_t abi_minor;
    const char *name;
    const char *version;
    const struct cf_task_def *const *tasks; /* NULL-terminated */
};

/* What a call can see of itself. The host owns it; plug-ins may use `task_data` freely. */
struct cf_call {
    size_t size;
    const struct cf_host *host;
    const struct cf_task_def *task;
    void *task_data;
};

/* Log levels, as in the host's logger. */
#define CF_PLUGIN_LOG_DEBUG 0
#define CF_PLUGIN_LOG_INFO 1
#define CF_PLUGIN_LOG_WARN 2
#define CF_PLUGIN_LOG_ERROR 3

typedef void (*cf_work_fn)(void *arg);
typedef void (*cf_after_work_fn)(struct cf_call *call, void *arg);

struct cf_host {
    size_t size;
    uint32_t abi_major;
    uint32_t abi_minor;

    /* The resolved value of a parameter (admin configuration over the BPMN's camunda:inputOutput
     * and camunda:field, then the default, with ${...} evaluated), or NULL when it has none. */
    const char *(*param)(struct cf_call *call, const char *name);

    /* Reads a process variable as seen from the task (local scope first, then outwards).
     * Returns 0, or a negative value when it does not exist. */
    int (*var_get)(struct cf_call *call, const char *name, struct cf_value *out);
    /* Sets a variable; applied when the call completes (discarded on error or failure). */
    int (*var_set)(struct cf_call *call, const char *name, const struct cf_value *value);

    /* A key for this logical step: the same for every retry and crash-resume of the step, and
     * different for the next step or loop iteration. Use it to make side effects idempotent. */
    const char *(*idempotency_key)(struct cf_call *call);
    /* Identifiers for log lines: process instance and activity id. */
    const char *(*instance_id)(struct cf_call *call);
    const char *(*activity_id)(struct cf_call *call);
    const char *(*tenant_id)(struct cf_call *call);

    /* Endings: exactly one, exactly once. */
    void (*complete)(struct cf_call *call);
    void (*throw_error)(struct cf_call *call, const char *code, const char *message);
    void (*fail)(struct cf_call *call, int retryable, const char *message);

    /* Runs `work(arg)` on a worker thread, then `after(call, arg)` on the loop thread. Returns 0
     * or a negative value when it could not be queued (then neither function runs). */
    int (*queue_work)(struct cf_call *call, cf_work_fn work, cf_after_work_fn after, void *arg);

    void (*log)(struct cf_call *call, int level, const char *fmt, ...) CF_PLUGIN_PRINTF(3, 4);

    /* Optional services of the host by name ("ca", ...), each a struct that starts with its size,
     * or NULL when the host has none under that name and version. */
    const void *(*service)(struct cf_call *call, const char *name, uint32_t version);

    /* ABI 1.1: how many runs this call's job has left, this one included (1 = the last). A task
     * that meets a transient failure fails retryably while more than one is left, and throws
     * its BPMN error on the last (e.g. CaConnectionFailed). */
    int (*attempts_left)(struct cf_call *call);
};

/*
 * The "ca" service (version 1): certificates through the certificate templates of the tenant.
 * A task names a template, never a CA address; the template says which CA connection (embedded,
 * cmp, cm-rest) and which procedure (validity, key policy, extensions, subject and SAN policy).
 * Issuance is idempotent per call: the host uses the call's idempotency key, so a retry or a
 * crash-resume of the same step gets the certificate already issued, never a second one.
 * Every issued certificate is stored as a certificate core object before it is handed out.
 */
#define CF_SERVICE_CA "ca"
#define CF_SERVICE_CA_VERSION 1

/* How a CA request ended; the names are the BPMN error codes Smart ID's tasks throw. */
enum cf_ca_outcome {
    CF_CA_RESULT_OK = 0,
    CF_CA_RESULT_COMMON_ERROR = 1,     /* "CommonError": no valid request could be made */
    CF_CA_RESULT_REQUEST_FAILED = 2,   /* "CaRequestFailed": the CA answered no */
    CF_CA_RESULT_CONNECTION_FAILED = 3 /* "CaConnectionFailed": cannot reach or talk to the CA */
};

/* Replaces what the CSR asks for (executeModifiedPKCS10RequestTask): the CSR then only proves
 * possession of the key. NULL fields keep the CSR's. */
struct cf_ca_override {
    size_t size;
    const char *subject_dn;     /* "CN=a.example,O=Example" (RFC 2253 / OpenSSL order) */
    const char *const *san_dns; /* NULL-terminated lists, or NULL */
    const char *const *san_ip;
    const char *const *san_email;
    const char *const *san_uri;
};

struct cf_ca_result {
    size_t size;
    enum cf_ca_outcome outcome;
    const char *message;     /* for errors: what went wrong, for people */
    const uint8_t *cert_der; /* the certificate (OK) */
    size_t cert_der_len;
    const char *cert_pem;    /* the same as PEM text with headers */
    const uint8_t *chain_p7; /* the chain as DER PKCS#7 certs-only (leaf, issuing, root) */
    size_t chain_p7_len;
    int64_t certificate_id; /* the stored certificate core object */
    int replayed;           /* 1 when an earlier run of this step had issued it */
};

/* Called once on the loop thread; the result and its buffers are valid during the call only. */
typedef void (*cf_ca_done_fn)(struct cf_call *call, const struct cf_ca_result *result, void *arg);

struct cf_ca_service {
    size_t size;
    /* Issues from a PKCS#10 request (PEM or DER bytes) through `template_name`. Returns 0 and
     * later calls `done` exactly once, or returns a negative value (then `done` never runs). */
    int (*issue_pkcs10)(struct cf_call *call, const char *template_name, const uint8_t *csr,
                        size_t csr_len, const struct cf_ca_override *override, cf_ca_done_fn done,
                        void *arg);
    /* Whether the template's CA connection can carry an override (a modified request). 1 yes,
     * 0 no, negative: no such template. `why` gets a sentence when it cannot. */
    int (*supports_override)(struct cf_call *call, const char *template_name, char *why,
                             size_t whylen);
};

/* The one symbol a plug-in exports. Returns NULL to refuse loading (after logging why). */
typedef const struct cf_module *(*cf_plugin_init_fn)(const struct cf_host *host);

#ifdef __cplusplus
}
#endif
#endif
