/*
 * The plug-in registry: loads task plug-ins (shared objects exporting cf_plugin_init, see
 * certflow/plugin.h) from a folder with dlopen(RTLD_NOW | RTLD_LOCAL), checks their ABI version,
 * refuses duplicate task names and aliases, and answers lookups by name. It also validates
 * parameter values against a task's schema and prints the `certflow tasks` manual.
 * It knows nothing of the runtime: the host function table is passed in by the caller.
 *
 * Ownership: the registry owns the loaded libraries (dlclose on cf_registry_free) and the module
 * definitions they point to; task and parameter definitions returned are borrowed from it.
 */
#ifndef CF_PLUGIN_REGISTRY_H
#define CF_PLUGIN_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/base.h"
#include "certflow/plugin.h"

struct cf_registry;

struct cf_registry *cf_registry_new(const struct cf_host *host);
void cf_registry_free(struct cf_registry *r);

/* Loads every "*.so" in `dir` (sorted by file name, so results do not depend on readdir order).
 * A library that fails to load, lacks cf_plugin_init, returns NULL, has another ABI major, or
 * defines a task name or alias already registered is refused with a message naming the file and
 * the task; the other libraries still load. Returns 0 when every library loaded, else the first
 * error code, with every problem (one per line) in `err`. */
int cf_registry_load_dir(struct cf_registry *r, const char *dir, char *err, size_t errlen);
/* Loads one library by path. */
int cf_registry_load_file(struct cf_registry *r, const char *path, char *err, size_t errlen);
/* Registers a module linked into the program (tests, built-in tasks). `origin` names it in
 * messages. */
int cf_registry_add_module(struct cf_registry *r, const struct cf_module *m, const char *origin,
                           char *err, size_t errlen);

/* Finds a task by name or alias; *is_alias (may be NULL) tells which. NULL when unknown. */
const struct cf_task_def *cf_registry_find(const struct cf_registry *r, const char *name,
                                           bool *is_alias);
/* Tasks in registration order. */
size_t cf_registry_count(const struct cf_registry *r);
const struct cf_task_def *cf_registry_at(const struct cf_registry *r, size_t i);
/* The module that defines a task, and the file it came from (or the origin given). */
const struct cf_module *cf_registry_module_of(const struct cf_registry *r,
                                              const struct cf_task_def *t, const char **origin);

/* Parameter definitions of a task are stepped by the size of the first element (plugin.h). */
size_t cf_task_param_count(const struct cf_task_def *t);
const struct cf_param_def *cf_task_param_at(const struct cf_task_def *t, size_t i);
const struct cf_param_def *cf_task_param_find(const struct cf_task_def *t, const char *name);
bool cf_task_declares_error(const struct cf_task_def *t, const char *code);

/* Checks a concrete parameter value: integer and boolean syntax, and membership in the valid
 * values. Messages name the parameter and list the valid values; they never include the value of
 * a secret parameter. */
int cf_param_check_value(const struct cf_param_def *p, const char *value, char *err, size_t errlen);

/* The manual printed by `certflow tasks`: every task with its summary, aliases, parameters
 * (type, mandatory, secret, valid values, default, description) and BPMN error codes. */
void cf_registry_manual(const struct cf_registry *r, struct cf_buf *out);

#endif
