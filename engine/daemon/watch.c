/*
 * The processes folder: every *.bpmn file in it is deployed, and deployed again when its content
 * changes (the engine makes a new version only for new content, so a restart or a touch deploys
 * nothing). A file that does not validate is logged problem by problem with its line and element
 * id; the version deployed before stays live. Deleting a file undeploys nothing.
 *
 * A file still being written must not be read half-way. inotify (uv_fs_event) says that something
 * changed, not that a writer is done, so an event only starts a debounce timer; the scan that
 * follows deploys a file only once its size and mtime did not change since the previous scan and
 * its mtime is at least settle_ms old. At start-up every file whose mtime is that old is deployed
 * at once. A writer that pauses longer than settle_ms mid-file can still be caught: the partial
 * file then fails validation, is logged, and the complete file is deployed when it lands.
 *
 * Seeding: when the folder does not exist yet it is created and filled with the top-level .bpmn
 * files of the seed folder (the checkout's processes/ by default) and with the push process
 * certificate-registered, so that the curl line printed at start works on a fresh checkout.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/daemon.h"

#define MAX_BPMN_BYTES (4u * 1024 * 1024)

struct file_state {
    char *name;
    int64_t size;
    int64_t mtime_ns;
    bool pending; /* changed and not yet deployed */
    bool present; /* seen by the current scan */
    char sha[65]; /* content last deployed or rejected, "" when none */
};

struct cf_watch {
    uv_fs_event_t ev;
    uv_timer_t timer;
    struct cf_engine *e;
    char *dir;
    char *tenant;
    uint64_t debounce_ms;
    uint64_t settle_ms;
    struct file_state *files;
    size_t n_files;
    bool first_scan;
    int open_handles;
};

static const char PUSH_PROCESS_BPMN[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\" "
    "xmlns:camunda=\"http://camunda.org/schema/1.0/bpmn\" id=\"Definitions_registered\" "
    "targetNamespace=\"http://bpmn.io/schema/bpmn\">\n"
    "  <bpmn:process id=\"" CF_DAEMON_PUSH_PROCESS "\" name=\"A certificate was pushed\" "
    "isExecutable=\"true\">\n"
    "    <bpmn:startEvent id=\"Start\" name=\"Certificate registered\">\n"
    "      <bpmn:outgoing>Flow_1</bpmn:outgoing>\n"
    "    </bpmn:startEvent>\n"
    "    <bpmn:sequenceFlow id=\"Flow_1\" sourceRef=\"Start\" targetRef=\"Task_record\" />\n"
    "    <bpmn:serviceTask id=\"Task_record\" name=\"Record the certificate\" "
    "camunda:delegateExpression=\"${setVariablesTask}\">\n"
    "      <bpmn:extensionElements>\n"
    "        <camunda:inputOutput>\n"
    "          <camunda:inputParameter name=\"variables\">registered:Boolean=true\n"
    "registeredSubject=${Certificate_SubjectDN}</camunda:inputParameter>\n"
    "        </camunda:inputOutput>\n"
    "      </bpmn:extensionElements>\n"
    "      <bpmn:incoming>Flow_1</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_2</bpmn:outgoing>\n"
    "    </bpmn:serviceTask>\n"
    "    <bpmn:sequenceFlow id=\"Flow_2\" sourceRef=\"Task_record\" targetRef=\"End\" />\n"
    "    <bpmn:endEvent id=\"End\" name=\"Recorded\">\n"
    "      <bpmn:incoming>Flow_2</bpmn:incoming>\n"
    "    </bpmn:endEvent>\n"
    "  </bpmn:process>\n"
    "</bpmn:definitions>\n";

/* ---- seeding -------------------------------------------------------------------------------- */

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char buf[1024];
    if (cf_strlcpy(buf, path, sizeof buf) != 0) {
        cf_errf(err, errlen, "path too long: %s", path);
        return CF_ELIMIT;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            cf_errf(err, errlen, "cannot create %s: %s", buf, strerror(errno));
            return CF_EIO;
        }
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        cf_errf(err, errlen, "cannot create %s: %s", buf, strerror(errno));
        return CF_EIO;
    }
    return 0;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* Writes a file under a temporary name and renames it, so the watch never sees it half-way. */
static int write_file(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cf_errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return CF_EIO;
    }
    bool ok = fwrite(data, 1, len, f) == len;
    if (fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        cf_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        return CF_EIO;
    }
    return 0;
}

int cf_watch_seed(const struct cf_daemon_config *c, char *err, size_t errlen)
{
    struct stat st;
    if (stat(c->processes_dir, &st) == 0)
        return 0;
    int rc = mkdir_p(c->processes_dir, err, errlen);
    if (rc)
        return rc;
    char path[1024];
    size_t copied = 0;
    DIR *d = c->seed_dir && *c->seed_dir ? opendir(c->seed_dir) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".bpmn"))
                continue;
            char src[1024];
            snprintf(src, sizeof src, "%s/%s", c->seed_dir, de->d_name);
            uint8_t *data;
            size_t len;
            if (cf_read_file(src, MAX_BPMN_BYTES, &data, &len, NULL, 0) != 0)
                continue; /* not a regular file, or unreadable: nothing to seed */
            snprintf(path, sizeof path, "%s/%s", c->processes_dir, de->d_name);
            rc = write_file(path, data, len, err, errlen);
            free(data);
            if (rc) {
                closedir(d);
                return rc;
            }
            copied++;
        }
        closedir(d);
    }
    snprintf(path, sizeof path, "%s/%s.bpmn", c->processes_dir, CF_DAEMON_PUSH_PROCESS);
    rc = write_file(path, PUSH_PROCESS_BPMN, sizeof PUSH_PROCESS_BPMN - 1, err, errlen);
    if (!rc)
        cf_log(CF_LOG_INFO, "processes folder created dir=%s seeded=%zu from=%s", c->processes_dir,
               copied + 1, c->seed_dir && *c->seed_dir ? c->seed_dir : "-");
    return rc;
}

/* ---- deploying ------------------------------------------------------------------------------ */

static void deploy_file(struct cf_watch *w, struct file_state *fs, const char *path)
{
    uint8_t *xml;
    size_t len;
    char err[512];
    int rc = cf_read_file(path, MAX_BPMN_BYTES, &xml, &len, err, sizeof err);
    if (rc) {
        cf_log(CF_LOG_WARN, "deploy: cannot read file=%s: %s", path, err);
        fs->pending = false;
        return;
    }
    if ((int64_t)len != fs->size) {
        /* Still growing: the next scan looks again. */
        free(xml);
        fs->size = (int64_t)len;
        return;
    }
    char sha[65];
    cf_sha256_hex(xml, len, sha);
    fs->pending = false;
    if (strcmp(sha, fs->sha) == 0) {
        free(xml);
        return;
    }
    cf_strlcpy(fs->sha, sha, sizeof fs->sha);
    struct cf_deploy_result res;
    memset(&res, 0, sizeof res);
    rc = cf_engine_deploy(w->e, fs->name, xml, len, w->tenant, &res);
    free(xml);
    for (size_t i = 0; i < res.warnings.count; i++) {
        const struct cf_diag *d = &res.warnings.items[i];
        cf_log(CF_LOG_WARN, "deploy: warning file=%s line=%d element=%s: %s", path, d->line,
               d->element_id ? d->element_id : "-", d->message);
    }
    if (rc) {
        if (!res.diags.count)
            cf_log(CF_LOG_ERROR, "deploy: failed file=%s: %s", path, cf_strerror(rc));
        for (size_t i = 0; i < res.diags.count; i++) {
            const struct cf_diag *d = &res.diags.items[i];
            cf_log(CF_LOG_ERROR, "deploy: invalid file=%s line=%d element=%s: %s", path, d->line,
                   d->element_id ? d->element_id : "-", d->message);
        }
        cf_log(CF_LOG_ERROR,
               "deploy: file=%s not deployed; the versions deployed before stay "
               "live",
               path);
        cf_deploy_result_free(&res);
        return;
    }
    for (size_t i = 0; i < res.n_defs; i++) {
        const struct cf_deployed *d = &res.defs[i];
        if (d->is_new)
            cf_log(CF_LOG_DEBUG, "deployed file=%s key=%s version=%d definition=%" PRId64, path,
                   d->key, d->version, d->definition_id);
        else
            cf_log(CF_LOG_DEBUG, "deploy: unchanged file=%s key=%s version=%d", path, d->key,
                   d->version);
    }
    cf_deploy_result_free(&res);
}

static struct file_state *file_of(struct cf_watch *w, const char *name)
{
    for (size_t i = 0; i < w->n_files; i++)
        if (strcmp(w->files[i].name, name) == 0)
            return &w->files[i];
    w->files = cf_xrealloc(w->files, (w->n_files + 1) * sizeof *w->files);
    struct file_state *fs = &w->files[w->n_files++];
    memset(fs, 0, sizeof *fs);
    fs->name = cf_xstrdup(name);
    fs->size = -1;
    return fs;
}

static void timer_cb(uv_timer_t *t);

static void scan(struct cf_watch *w)
{
    DIR *d = opendir(w->dir);
    if (!d) {
        cf_log(CF_LOG_WARN, "watch: cannot read dir=%s: %s", w->dir, strerror(errno));
        return;
    }
    uint64_t now = cf_now_ms();
    bool waiting = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".bpmn"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", w->dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        struct file_state *fs = file_of(w, de->d_name);
        int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        bool changed = st.st_size != fs->size || mtime_ns != fs->mtime_ns;
        if (changed) {
            fs->size = st.st_size;
            fs->mtime_ns = mtime_ns;
            fs->pending = true;
        }
        if (!fs->pending)
            continue;
        uint64_t mtime_ms = (uint64_t)(mtime_ns / 1000000);
        bool old_enough = now >= mtime_ms + w->settle_ms;
        /* After start-up a change must also have been seen unchanged by one more scan. */
        if (old_enough && (!changed || w->first_scan))
            deploy_file(w, fs, path);
        if (fs->pending)
            waiting = true;
    }
    closedir(d);
    w->first_scan = false;
    if (waiting) {
        uint64_t again = w->settle_ms / 2;
        uv_timer_start(&w->timer, timer_cb, again > w->debounce_ms ? again : w->debounce_ms, 0);
    }
}

static void timer_cb(uv_timer_t *t)
{
    scan(cf_container_of(t, struct cf_watch, timer));
}

static void event_cb(uv_fs_event_t *ev, const char *filename, int events, int status)
{
    struct cf_watch *w = cf_container_of(ev, struct cf_watch, ev);
    (void)filename;
    (void)events;
    if (status < 0) {
        cf_log(CF_LOG_WARN, "watch: dir=%s: %s", w->dir, uv_strerror(status));
        return;
    }
    /* Restarting the timer on every event is the debounce: a burst of writes gives one scan. */
    uv_timer_start(&w->timer, timer_cb, w->debounce_ms, 0);
}

int cf_watch_start(uv_loop_t *loop, struct cf_engine *e, const struct cf_daemon_config *c,
                   struct cf_watch **out, char *err, size_t errlen)
{
    struct cf_watch *w = cf_xcalloc(1, sizeof *w);
    w->e = e;
    w->dir = cf_xstrdup(c->processes_dir);
    w->tenant = cf_xstrdup(c->deploy_tenant ? c->deploy_tenant : "");
    w->debounce_ms = (uint64_t)c->debounce_ms;
    w->settle_ms = (uint64_t)c->settle_ms;
    w->first_scan = true;
    uv_timer_init(loop, &w->timer);
    uv_fs_event_init(loop, &w->ev);
    w->open_handles = 2;
    int rc = uv_fs_event_start(&w->ev, event_cb, w->dir, 0);
    if (rc) {
        cf_errf(err, errlen, "cannot watch %s: %s", w->dir, uv_strerror(rc));
        cf_watch_close(w);
        return CF_EIO;
    }
    scan(w);
    *out = w;
    return 0;
}

static void close_cb(uv_handle_t *h)
{
    struct cf_watch *w = h->data;
    if (--w->open_handles > 0)
        return;
    for (size_t i = 0; i < w->n_files; i++)
        free(w->files[i].name);
    free(w->files);
    free(w->dir);
    free(w->tenant);
    free(w);
}

void cf_watch_close(struct cf_watch *w)
{
    if (!w)
        return;
    w->ev.data = w;
    w->timer.data = w;
    uv_fs_event_stop(&w->ev);
    uv_close((uv_handle_t *)&w->ev, close_cb);
    uv_close((uv_handle_t *)&w->timer, close_cb);
}
