/*
 * `certflow user add|list|passwd|map-cert|delete`: manages certflowd's users in the database
 * file, for the first admin on a server without the API, for scripts, and for tests. It writes
 * with the store's own functions (store/admin.h), in one transaction per command, so it is safe
 * next to a running certflowd (SQLite serialises the writers; the busy timeout is 5 s).
 *
 * Passwords never come from the command line, where other users could read them in the process
 * list and shells keep them in history: they come from $CERTFLOW_PASSWORD, or are asked for twice
 * on the terminal without echo, or are read as one line from standard input when that is not a
 * terminal. Only the argon2id hash is stored.
 */
#include "users.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <sodium.h>

#include "api/api.h"
#include "base/base.h"
#include "store/admin.h"
#include "store/store.h"

#define DEFAULT_DB "var/certflow.db"
#define MAX_PASSWORD 1024

static const char user_usage[] =
    "usage:\n"
    "  certflow user add NAME [--admin] [--tenant ID]... [--allow [TENANT:]KEY]...\n"
    "                    [--cert FILE.pem] [--no-password] [--db PATH]\n"
    "      create a user; --tenant makes it a member of a tenant (created when missing),\n"
    "      --allow lets it start process KEY ('*' for any) in TENANT (default: each --tenant),\n"
    "      --cert maps a client certificate to it by issuer and subject\n"
    "  certflow user list [--db PATH]\n"
    "  certflow user passwd NAME [--db PATH]\n"
    "  certflow user map-cert NAME (FILE.pem | --remove) [--db PATH]\n"
    "  certflow user delete NAME [--db PATH]\n"
    "\n"
    "The password comes from $CERTFLOW_PASSWORD, a prompt on the terminal, or one line of\n"
    "standard input; never from the command line. The database defaults to " DEFAULT_DB ".\n";

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "certflow user: %s\n", msg);
    fputs(user_usage, stderr);
    return 2;
}

/* Reads one line without echo when `fd` is a terminal. */
static int read_secret_line(const char *prompt, char *out, size_t outlen)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fputs(prompt, stderr);
        fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &old) != 0)
            return -1;
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *r = fgets(out, (int)outlen, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!r)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static int get_password(char *out, size_t outlen)
{
    const char *env = getenv("CERTFLOW_PASSWORD");
    if (env && *env) {
        if (cf_strlcpy(out, env, outlen) != 0) {
            fprintf(stderr, "certflow user: $CERTFLOW_PASSWORD is too long\n");
            return -1;
        }
        return 0;
    }
    if (read_secret_line("password: ", out, outlen) != 0) {
        fprintf(stderr, "certflow user: no password given ($CERTFLOW_PASSWORD, terminal or "
                        "standard input)\n");
        return -1;
    }
    if (isatty(STDIN_FILENO)) {
        char again[MAX_PASSWORD];
        int rc = read_secret_line("again: ", again, sizeof again);
        bool same =
            rc == 0 && strlen(again) == strlen(out) && sodium_memcmp(again, out, strlen(out)) == 0;
        sodium_memzero(again, sizeof again);
        if (!same) {
            fprintf(stderr, "certflow user: the passwords differ\n");
            return -1;
        }
    }
    if (!*out) {
        fprintf(stderr, "certflow user: the password is empty\n");
        return -1;
    }
    return 0;
}

/* Asks for a password and hashes it. */
static int password_hash(char hash[CF_PASSWORD_HASH_LEN])
{
    char pw[MAX_PASSWORD];
    int rc = get_password(pw, sizeof pw);
    if (!rc && cf_admin_password_hash(pw, hash) != 0) {
        fprintf(stderr, "certflow user: cannot hash the password (out of memory)\n");
        rc = -1;
    }
    sodium_memzero(pw, sizeof pw);
    return rc;
}

/* The RFC 2253 issuer and subject of a PEM certificate, as certflowd maps client certificates. */
static int cert_names(const char *path, char **issuer, char **subject)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!x) {
        fprintf(stderr, "certflow user: %s is not a PEM certificate\n", path);
        return -1;
    }
    *issuer = cf_api_dn_text(X509_get_issuer_name(x));
    *subject = cf_api_dn_text(X509_get_subject_name(x));
    X509_free(x);
    if (!*issuer || !*subject) {
        free(*issuer);
        free(*subject);
        fprintf(stderr, "certflow user: the names of %s cannot be printed\n", path);
        return -1;
    }
    return 0;
}

static struct cf_store *open_db(const char *path)
{
    char err[512];
    struct cf_store_options opt = {0};
    struct cf_store *s;
    if (cf_store_open(path, &opt, &s, err, sizeof err) != 0) {
        fprintf(stderr, "certflow user: %s: %s\n", path, err);
        return NULL;
    }
    return s;
}

static int find_user(struct cf_store *s, const char *name, struct cf_user_row *u)
{
    int rc = cf_admin_user_find_name(s, name, u);
    if (rc == CF_ENOENT)
        fprintf(stderr, "certflow user: no user %s\n", name);
    else if (rc)
        fprintf(stderr, "certflow user: cannot read users: %s\n", cf_strerror(rc));
    return rc;
}

static int finish_tx(struct cf_store *s, int rc)
{
    if (!rc)
        rc = cf_store_commit(s);
    if (rc && cf_store_in_tx(s))
        cf_store_rollback(s);
    return rc;
}

static const char *db_option(int *argc, char **argv)
{
    const char *db = DEFAULT_DB;
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < *argc) {
            db = argv[++i];
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    return db;
}

static int cmd_add(int argc, char **argv, const char *db)
{
    if (argc < 2 || argv[1][0] == '-')
        return usage("user add needs a NAME");
    const char *name = argv[1];
    bool admin = false, no_password = false;
    const char *cert = NULL;
    const char *tenants[64], *allows[64];
    size_t n_tenants = 0, n_allows = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--admin") == 0) {
            admin = true;
        } else if (strcmp(argv[i], "--no-password") == 0) {
            no_password = true;
        } else if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc && n_tenants < 64) {
            tenants[n_tenants++] = argv[++i];
        } else if (strcmp(argv[i], "--allow") == 0 && i + 1 < argc && n_allows < 64) {
            allows[n_allows++] = argv[++i];
        } else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc) {
            cert = argv[++i];
        } else {
            return usage("unknown option for user add");
        }
    }
    if (strlen(name) > 127)
        return usage("the user name is longer than 127 bytes");
    for (size_t i = 0; i < n_allows; i++)
        if (!strchr(allows[i], ':') && !n_tenants)
            return usage("--allow KEY without TENANT: needs a --tenant");

    char *issuer = NULL, *subject = NULL;
    if (cert && cert_names(cert, &issuer, &subject) != 0)
        return 1;
    char hash[CF_PASSWORD_HASH_LEN] = "";
    if (!no_password && password_hash(hash) != 0) {
        free(issuer);
        free(subject);
        return 1;
    }
    struct cf_store *s = open_db(db);
    if (!s) {
        free(issuer);
        free(subject);
        return 1;
    }
    uint64_t now = cf_now_ms();
    int64_t uid = 0;
    int rc = cf_store_begin(s);
    for (size_t i = 0; !rc && i < n_tenants; i++) {
        if (cf_admin_tenant_exists(s, tenants[i]) == CF_ENOENT) {
            rc = cf_admin_tenant_create(s, tenants[i], NULL, now);
            if (!rc)
                printf("created tenant %s\n", tenants[i]);
        }
    }
    if (!rc) {
        rc = cf_admin_user_create(s, name, no_password ? NULL : hash, admin, now, &uid);
        if (rc == CF_EEXIST)
            fprintf(stderr, "certflow user: user %s already exists\n", name);
    }
    if (!rc && issuer) {
        rc = cf_admin_user_set_cert(s, uid, issuer, subject);
        if (rc == CF_EEXIST)
            fprintf(stderr, "certflow user: that certificate is mapped to another user\n");
    }
    for (size_t i = 0; !rc && i < n_tenants; i++)
        rc = cf_admin_user_add_tenant(s, uid, tenants[i]);
    for (size_t i = 0; !rc && i < n_allows; i++) {
        const char *colon = strchr(allows[i], ':');
        if (colon) {
            char tenant[256];
            snprintf(tenant, sizeof tenant, "%.*s", (int)(colon - allows[i]), allows[i]);
            rc = cf_admin_user_allow_process(s, uid, tenant, colon + 1);
            if (rc == CF_ENOENT)
                fprintf(stderr, "certflow user: no tenant %s\n", tenant);
        } else {
            for (size_t t = 0; !rc && t < n_tenants; t++)
                rc = cf_admin_user_allow_process(s, uid, tenants[t], allows[i]);
        }
    }
    rc = finish_tx(s, rc);
    sodium_memzero(hash, sizeof hash);
    if (rc && rc != CF_EEXIST && rc != CF_ENOENT)
        fprintf(stderr, "certflow user: cannot add %s: %s (%s)\n", name, cf_strerror(rc),
                cf_store_errmsg(s));
    if (!rc)
        printf("added user %s id=%" PRId64 "%s%s\n", name, uid, admin ? " admin" : "",
               issuer ? " (client certificate mapped)" : "");
    cf_store_close(s);
    free(issuer);
    free(subject);
    return rc ? 1 : 0;
}

struct list_ctx {
    struct cf_store *s;
    int rc;
};

static int print_process(void *arg, const char *tenant_id, const char *key)
{
    int *first = arg;
    printf("%s%s:%s", *first ? "" : ",", tenant_id, key);
    *first = 0;
    return 0;
}

static int print_user(void *arg, const struct cf_user_row *u)
{
    struct list_ctx *ctx = arg;
    char **tenants;
    size_t n;
    printf("%-20s id=%" PRId64 " admin=%s basic=%s", u->name, u->id, u->admin ? "yes" : "no",
           u->password_hash ? "yes" : "no");
    if (cf_admin_user_tenants(ctx->s, u->id, &tenants, &n) == 0) {
        printf(" tenants=");
        for (size_t i = 0; i < n; i++)
            printf("%s%s", i ? "," : "", tenants[i]);
        if (!n)
            printf("-");
        cf_admin_strings_free(tenants, n);
    }
    printf(" processes=");
    int first = 1;
    cf_admin_user_processes(ctx->s, u->id, print_process, &first);
    if (first)
        printf("-");
    if (u->cert_subject)
        printf(" cert=\"%s\" issuer=\"%s\"", u->cert_subject, u->cert_issuer);
    printf("\n");
    return 0;
}

static int cmd_list(const char *db)
{
    struct cf_store *s = open_db(db);
    if (!s)
        return 1;
    struct list_ctx ctx = {.s = s};
    int rc = cf_admin_user_list(s, print_user, &ctx);
    if (rc)
        fprintf(stderr, "certflow user: cannot list users: %s\n", cf_strerror(rc));
    cf_store_close(s);
    return rc ? 1 : 0;
}

static int cmd_passwd(int argc, char **argv, const char *db)
{
    if (argc != 2)
        return usage("user passwd needs a NAME");
    struct cf_store *s = open_db(db);
    if (!s)
        return 1;
    struct cf_user_row u;
    int rc = find_user(s, argv[1], &u);
    char hash[CF_PASSWORD_HASH_LEN];
    if (!rc && password_hash(hash) != 0)
        rc = -1;
    if (!rc) {
        rc = cf_store_begin(s);
        if (!rc)
            rc = cf_admin_user_set_password(s, u.id, hash);
        rc = finish_tx(s, rc);
        sodium_memzero(hash, sizeof hash);
        if (rc)
            fprintf(stderr, "certflow user: cannot set the password: %s\n", cf_strerror(rc));
        else
            printf("password of %s changed\n", argv[1]);
    }
    cf_user_row_free(&u);
    cf_store_close(s);
    return rc ? 1 : 0;
}

static int cmd_map_cert(int argc, char **argv, const char *db)
{
    if (argc != 3)
        return usage("user map-cert needs NAME and FILE.pem or --remove");
    bool remove_map = strcmp(argv[2], "--remove") == 0;
    char *issuer = NULL, *subject = NULL;
    if (!remove_map && cert_names(argv[2], &issuer, &subject) != 0)
        return 1;
    struct cf_store *s = open_db(db);
    if (!s) {
        free(issuer);
        free(subject);
        return 1;
    }
    struct cf_user_row u;
    int rc = find_user(s, argv[1], &u);
    if (!rc) {
        rc = cf_store_begin(s);
        if (!rc)
            rc = cf_admin_user_set_cert(s, u.id, issuer, subject);
        rc = finish_tx(s, rc);
        if (rc == CF_EEXIST)
            fprintf(stderr, "certflow user: that certificate is mapped to another user\n");
        else if (rc)
            fprintf(stderr, "certflow user: cannot map: %s\n", cf_strerror(rc));
        else if (remove_map)
            printf("%s has no client certificate now\n", argv[1]);
        else
            printf("%s is mapped to subject \"%s\" issuer \"%s\"\n", argv[1], subject, issuer);
    }
    cf_user_row_free(&u);
    cf_store_close(s);
    free(issuer);
    free(subject);
    return rc ? 1 : 0;
}

static int cmd_delete(int argc, char **argv, const char *db)
{
    if (argc != 2)
        return usage("user delete needs a NAME");
    struct cf_store *s = open_db(db);
    if (!s)
        return 1;
    struct cf_user_row u;
    int rc = find_user(s, argv[1], &u);
    if (!rc) {
        rc = cf_store_begin(s);
        if (!rc)
            rc = cf_admin_user_delete(s, u.id);
        rc = finish_tx(s, rc);
        if (rc)
            fprintf(stderr, "certflow user: cannot delete: %s\n", cf_strerror(rc));
        else
            printf("deleted user %s\n", argv[1]);
    }
    cf_user_row_free(&u);
    cf_store_close(s);
    return rc ? 1 : 0;
}

int cf_cli_user(int argc, char **argv)
{
    if (argc < 2)
        return usage(NULL);
    const char *db = db_option(&argc, argv);
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(user_usage, stdout);
        return 0;
    }
    if (strcmp(sub, "add") == 0)
        return cmd_add(argc - 1, argv + 1, db);
    if (strcmp(sub, "list") == 0)
        return argc == 2 ? cmd_list(db) : usage("user list takes no arguments");
    if (strcmp(sub, "passwd") == 0)
        return cmd_passwd(argc - 1, argv + 1, db);
    if (strcmp(sub, "map-cert") == 0)
        return cmd_map_cert(argc - 1, argv + 1, db);
    if (strcmp(sub, "delete") == 0)
        return cmd_delete(argc - 1, argv + 1, db);
    return usage("unknown user command");
}
