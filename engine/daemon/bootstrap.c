/*
 * First start: a database without any user gets the tenant "default", the certificate template
 * "default" in it, and an admin user with a random password that may start every process of the
 * tenant and is mapped to the generated admin client certificate. The password is shown once on
 * stdout and kept in <data_dir>/admin-password (mode 0600) for the operator; it is never logged.
 * Later starts find a user and change nothing, so an operator's changes stay.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/daemon.h"
#include "store/admin.h"

static int count_user(void *arg, const struct cf_user_row *r)
{
    (void)r;
    (*(int *)arg)++;
    return 1; /* one is enough to know */
}

static int write_secret(const char *path, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        cf_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return CF_EIO;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            cf_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            close(fd);
            return CF_EIO;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        cf_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return CF_EIO;
    }
    return 0;
}

int cf_daemon_bootstrap(struct cf_store *s, const struct cf_daemon_config *c,
                        const char *admin_cert, bool *created, char *err, size_t errlen)
{
    *created = false;
    int users = 0;
    int rc = cf_admin_user_list(s, count_user, &users);
    if (rc < 0) {
        cf_errf(err, errlen, "cannot read users: %s", cf_strerror(rc));
        return rc;
    }
    if (users)
        return 0;

    char *issuer = NULL, *subject = NULL;
    if (admin_cert) {
        rc = cf_daemon_cert_names(admin_cert, &issuer, &subject, err, errlen);
        if (rc)
            return rc;
    }
    /* 18 random bytes: 24 Base64 characters, 144 bits, easy to paste. */
    uint8_t rnd[18];
    char password[32];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2base64(password, sizeof password, rnd, sizeof rnd,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(rnd, sizeof rnd);
    char hash[CF_PASSWORD_HASH_LEN];
    rc = cf_admin_password_hash(password, hash);
    if (rc) {
        cf_errf(err, errlen, "cannot hash the admin password: %s", cf_strerror(rc));
        goto out;
    }

    uint64_t now = cf_now_ms();
    int64_t uid = 0;
    rc = cf_store_begin(s);
    if (!rc && cf_admin_tenant_exists(s, c->bootstrap_tenant) == CF_ENOENT)
        rc = cf_admin_tenant_create(s, c->bootstrap_tenant, "Default tenant", now);
    if (!rc) {
        struct cf_template_row t;
        int trc = cf_admin_template_get(s, c->bootstrap_tenant, c->bootstrap_template, &t);
        cf_template_row_free(&t);
        if (trc == CF_ENOENT)
            rc = cf_admin_template_create(s, c->bootstrap_tenant, c->bootstrap_template, "embedded",
                                          NULL, NULL, now, NULL);
        else
            rc = trc;
    }
    if (!rc)
        rc = cf_admin_user_create(s, c->admin_user, hash, true, now, &uid);
    if (!rc && issuer)
        rc = cf_admin_user_set_cert(s, uid, issuer, subject);
    if (!rc)
        rc = cf_admin_user_add_tenant(s, uid, c->bootstrap_tenant);
    if (!rc)
        rc = cf_admin_user_allow_process(s, uid, c->bootstrap_tenant, "*");
    if (!rc)
        rc = cf_store_commit(s);
    if (rc) {
        cf_errf(err, errlen, "cannot create the first tenant and admin: %s (%s)", cf_strerror(rc),
                cf_store_errmsg(s));
        if (cf_store_in_tx(s))
            cf_store_rollback(s);
        goto out;
    }
    char path[512], line[64];
    snprintf(path, sizeof path, "%s/admin-password", c->data_dir);
    snprintf(line, sizeof line, "%s\n", password);
    rc = write_secret(path, line, err, errlen);
    sodium_memzero(line, sizeof line);
    if (rc)
        goto out;
    printf("first start: created tenant %s, template %s and admin user %s\n"
           "  password of %s (shown once; also in %s, mode 0600): %s\n",
           c->bootstrap_tenant, c->bootstrap_template, c->admin_user, c->admin_user, path,
           password);
    if (admin_cert)
        printf("  %s is also mapped to the client certificate %s\n", c->admin_user, admin_cert);
    fflush(stdout);
    *created = true;
out:
    sodium_memzero(password, sizeof password);
    sodium_memzero(hash, sizeof hash);
    free(issuer);
    free(subject);
    return rc;
}
