/*
 * The noop module: one task, noopTask, that completes at once without touching anything. The
 * benchmark runs processes made of it to measure what the engine itself costs per task (token
 * movement, jobs, commits), with no plug-in work to blur the numbers.
 */
#include <certflow/plugin.h>

#include <stddef.h>

CF_PLUGIN_EXPORT const struct cf_module *cf_plugin_init(const struct cf_host *host);

static void noop_execute(struct cf_call *call)
{
    call->host->complete(call);
}

static const struct cf_task_def noop_task = {
    .size = sizeof(struct cf_task_def),
    .name = "noopTask",
    .summary = "Does nothing and completes at once; the benchmark uses it to measure the engine "
               "alone.",
    .execute = noop_execute,
};

static const struct cf_task_def *const noop_tasks[] = {&noop_task, NULL};

static const struct cf_module noop_module = {
    .size = sizeof(struct cf_module),
    .abi_major = CF_PLUGIN_ABI_MAJOR,
    .abi_minor = CF_PLUGIN_ABI_MINOR,
    .name = "noop",
    .version = "0.1.0",
    .tasks = noop_tasks,
};

const struct cf_module *cf_plugin_init(const struct cf_host *host)
{
    (void)host;
    return &noop_module;
}
