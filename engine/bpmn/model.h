/*
 * The executable model of one BPMN process, built by the loader (loader.c) from a BPMN 2.0 file as
 * Camunda Modeler and bpmn.io write it. The model knows nothing of SQLite, plug-ins or HTTP.
 *
 * Ownership: a struct cf_model owns everything reachable from it (elements, flows, strings,
 * compiled expressions) in one arena; cf_model_free() releases it all. Models are immutable after
 * loading and may be shared by every instance of the definition.
 *
 * Diagnostics: loading collects *all* problems of a file, each with line and element id, into a
 * struct cf_diags, instead of stopping at the first.
 */
#ifndef CF_BPMN_MODEL_H
#define CF_BPMN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "expr/expr.h"

/* Namespaces, matched by URI, never by prefix. */
#define CF_NS_BPMN "http://www.omg.org/spec/BPMN/20100524/MODEL"
#define CF_NS_CAMUNDA "http://camunda.org/schema/1.0/bpmn"
#define CF_NS_ACTIVITI "http://activiti.org/bpmn"

/* Limits for untrusted files. */
#define CF_BPMN_MAX_BYTES (4u * 1024u * 1024u)
#define CF_BPMN_MAX_DEPTH 64
#define CF_BPMN_MAX_ELEMENTS 50000
#define CF_BPMN_MAX_ATTR_LEN 65536

struct cf_diag {
    int line;         /* 0 when unknown */
    char *element_id; /* may be NULL */
    char *message;
};

struct cf_diags {
    struct cf_diag *items;
    size_t count;
    size_t cap;
};

void cf_diags_init(struct cf_diags *d);
void cf_diags_free(struct cf_diags *d);
void cf_diags_add(struct cf_diags *d, int line, const char *element_id, const char *fmt, ...)
    CF_PRINTF(4, 5);
/* One line per problem: "<file>:<line>: <element-id>: <message>" (element part omitted when
 * unknown). `file` may be NULL, then "<line>: ..." */
void cf_diags_format(const struct cf_diags *d, const char *file, struct cf_buf *out);

enum cf_elem_type {
    CF_EL_START_EVENT,
    CF_EL_END_EVENT,
    CF_EL_INTERMEDIATE_CATCH, /* timer or message */
    CF_EL_INTERMEDIATE_THROW, /* none: a pass-through */
    CF_EL_BOUNDARY_EVENT,
    CF_EL_TASK,         /* bpmn:task / manualTask: a pass-through */
    CF_EL_SERVICE_TASK, /* also sendTask and businessRuleTask with a delegate expression */
    CF_EL_RECEIVE_TASK,
    CF_EL_EXCLUSIVE_GATEWAY,
    CF_EL_PARALLEL_GATEWAY,
    CF_EL_INCLUSIVE_GATEWAY,
    CF_EL_SUBPROCESS, /* embedded; also the event subprocess (triggered_by_event) */
    CF_EL_CALL_ACTIVITY
};

enum cf_event_kind { CF_EV_NONE, CF_EV_ERROR, CF_EV_TERMINATE, CF_EV_TIMER, CF_EV_MESSAGE };

enum cf_timer_kind { CF_TIMER_NONE, CF_TIMER_DATE, CF_TIMER_DURATION, CF_TIMER_CYCLE };

/* camunda:inputParameter / outputParameter / field: a name and a template (NULL value = null). */
struct cf_mapping {
    const char *name;
    struct cf_expr *value; /* NULL when the parameter has no text (null) */
    int line;
};

/* camunda:in / camunda:out of a call activity. */
struct cf_var_mapping {
    const char *source;          /* variable name, or NULL */
    struct cf_expr *source_expr; /* sourceExpression, or NULL */
    const char *target;          /* target variable, or NULL */
    bool all;                    /* variables="all" */
    bool business_key;           /* camunda:in businessKey="..." (expr in source_expr) */
    bool local;
};

struct cf_elem;

struct cf_flow {
    const char *id;
    const char *name;
    int line;
    struct cf_elem *source;
    struct cf_elem *target;
    struct cf_expr *condition; /* NULL: unconditional */
    bool is_default;           /* the source's default flow */
};

struct cf_elem {
    enum cf_elem_type type;
    const char *id;
    const char *name; /* may be NULL */
    const char *tag;  /* local name in the file: "serviceTask", "sendTask", ... */
    int line;
    size_t index;           /* position in model->elements */
    struct cf_elem *parent; /* enclosing subprocess, or NULL at process level */

    struct cf_flow **incoming;
    size_t n_incoming;
    struct cf_flow **outgoing; /* in document order */
    size_t n_outgoing;
    struct cf_flow *default_flow;

    /* Events. */
    enum cf_event_kind event;
    const char *error_code;    /* resolved errorCode (see bpmn-error-semantics.md §2, §5); NULL =
                                  catch-all on catching events */
    const char *error_ref;     /* the raw errorRef, for messages */
    const char *error_message; /* camunda:errorMessage of a thrown <error>, or NULL */
    const char *error_code_variable;    /* camunda:errorCodeVariable */
    const char *error_message_variable; /* camunda:errorMessageVariable */
    enum cf_timer_kind timer;
    struct cf_expr *timer_expr;
    const char *message_name; /* resolved from messageRef; may hold ${...} in Camunda, kept raw */
    bool cancel_activity;     /* boundary events and event-subprocess start events */
    struct cf_elem *attached_to; /* boundary events */
    struct cf_elem **boundaries; /* boundary events attached to this activity, document order */
    size_t n_boundaries;

    /* Subprocesses. */
    bool triggered_by_event;   /* event subprocess */
    struct cf_elem **children; /* direct children, document order */
    size_t n_children;
    struct cf_elem *none_start;          /* the none start event among children, if any */
    struct cf_elem **event_subprocesses; /* direct children with triggered_by_event */
    size_t n_event_subprocesses;

    /* Service tasks. */
    const char *delegate;        /* the name in ${name} */
    bool delegate_is_expression; /* written as camunda:expression rather than delegateExpression */
    struct cf_mapping *inputs;
    size_t n_inputs;
    struct cf_mapping *outputs;
    size_t n_outputs;
    struct cf_mapping *fields;
    size_t n_fields;

    /* Asynchronous continuations and retries (camunda:asyncBefore/asyncAfter/async,
     * camunda:failedJobRetryTimeCycle). */
    bool async_before;
    bool async_after;
    bool exclusive;
    const char *retry_cycle;

    /* Call activities. */
    const char *called_element;
    const char *called_binding; /* "latest" (default), "deployment", "version" */
    const char *called_version;
    struct cf_var_mapping *call_in;
    size_t n_call_in;
    struct cf_var_mapping *call_out;
    size_t n_call_out;
};

struct cf_model {
    const char *key;  /* the process id */
    const char *name; /* may be NULL */
    bool executable;
    int line;
    /* Every flow node, in document order; children of subprocesses included. */
    struct cf_elem **elements;
    size_t n_elements;
    struct cf_flow **flows;
    size_t n_flows;
    /* Process level. */
    struct cf_elem **children;
    size_t n_children;
    struct cf_elem *none_start;
    struct cf_elem **event_subprocesses;
    size_t n_event_subprocesses;
    /* Message and timer start events at process level (issue 3). */
    struct cf_elem **start_events;
    size_t n_start_events;
    /* Arena owning the memory above (opaque to users). */
    void *arena;
};

/* Parses a BPMN file's bytes. On success returns 0 and the models of its executable processes
 * (in document order; a file may hold several processes). On failure returns CF_EPARSE or
 * CF_EINVALID with every problem in `diags`; nothing is returned. `bytes` need not be
 * NUL-terminated. Hostile input (DOCTYPE, entities, oversized, too deep) is refused, never
 * expanded. The loader never opens a file or a network resource. */
int cf_bpmn_load(const uint8_t *bytes, size_t len, struct cf_model ***models, size_t *n_models,
                 struct cf_diags *diags);
/* Reads `path` with a size cap and loads it (never through libxml2's own file I/O, which would
 * decompress gzip/xz transparently). */
int cf_bpmn_load_file(const char *path, struct cf_model ***models, size_t *n_models,
                      struct cf_diags *diags);
void cf_models_free(struct cf_model **models, size_t n);
void cf_model_free(struct cf_model *m);

struct cf_elem *cf_model_find(const struct cf_model *m, const char *id);
/* "serviceTask" etc. as Camunda reports activityType. */
const char *cf_elem_type_name(const struct cf_elem *e);
/* True for elements that are activities (tasks, subprocesses, call activities). */
bool cf_elem_is_activity(const struct cf_elem *e);

/* Called once at start-up by every program that loads BPMN: installs libxml2's deny-all external
 * entity loader. Safe to call more than once. */
void cf_bpmn_global_init(void);

#endif
