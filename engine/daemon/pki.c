/*
 * The local PKI that lets a fresh checkout speak TLS at once: on first start, when no TLS
 * material is configured, certflowd makes under <data_dir>/tls a CA, a server certificate for
 * localhost, 127.0.0.1 and ::1, a client certificate for the bootstrap admin (mapped to that user
 * by bootstrap.c), and an example certificate to push with curl. It uses OpenSSL's APIs, not the
 * openssl command, so that it needs no other program. Keys are ECDSA P-256, written with mode
 * 0600; existing files are never overwritten, and whatever is missing is made again from the CA
 * (a new CA, and so all leaves, only when the CA itself is missing).
 *
 * This PKI is for trying certflow on one machine. Production configures [tls] cert, key and
 * truststore instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "api/api.h"
#include "daemon/daemon.h"

#define CA_DAYS 3650
#define LEAF_DAYS 825

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static EVP_PKEY *new_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int write_key(const char *path, EVP_PKEY *k, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        cf_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return CF_EIO;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        cf_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return CF_EIO;
    }
    int ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        cf_errf(err, errlen, "cannot write %s", path);
        return CF_EIO;
    }
    return 0;
}

static int write_certs(const char *path, X509 *a, X509 *b, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        cf_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return CF_EIO;
    }
    int ok = PEM_write_X509(f, a) && (!b || PEM_write_X509(f, b));
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        cf_errf(err, errlen, "cannot write %s", path);
        return CF_EIO;
    }
    return 0;
}

/* The DER of `x` as Base64 wrapped at 64 columns, the way a CA's distribution rule sends it. */
static int write_b64(const char *path, X509 *x, char *err, size_t errlen)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0) {
        cf_errf(err, errlen, "cannot encode the example certificate");
        return CF_EIO;
    }
    size_t cap = sodium_base64_encoded_len((size_t)n, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = cf_xmalloc(cap);
    sodium_bin2base64(b64, cap, der, (size_t)n, sodium_base64_VARIANT_ORIGINAL);
    OPENSSL_free(der);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(b64);
        cf_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return CF_EIO;
    }
    size_t len = strlen(b64);
    for (size_t i = 0; i < len; i += 64) {
        size_t k = len - i < 64 ? len - i : 64;
        fwrite(b64 + i, 1, k, f);
        fputc('\n', f);
    }
    free(b64);
    if (fclose(f) != 0) {
        cf_errf(err, errlen, "cannot write %s", path);
        return CF_EIO;
    }
    return 0;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

enum leaf_kind { LEAF_CA, LEAF_SERVER, LEAF_CLIENT, LEAF_EXAMPLE };

/* A certificate for `key` with subject O=certflow local, CN=`cn`, signed by (ca, ca_key), or
 * self-signed for LEAF_CA. */
static X509 *make_cert(enum leaf_kind kind, const char *cn, EVP_PKEY *key, X509 *ca,
                       EVP_PKEY *ca_key)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    bool ok = X509_set_version(x, 2) == 1;
    /* 159 random bits: a positive serial of at most 20 octets, unpredictable (RFC 5280). */
    BIGNUM *bn = BN_new();
    ok = ok && bn && BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
         BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    X509_NAME *name = X509_NAME_new();
    ok = ok && name &&
         X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                    (const unsigned char *)"certflow local", -1, -1, 0) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) &&
         X509_set_subject_name(x, name) == 1;
    X509_NAME_free(name);
    ok = ok && X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : X509_get_subject_name(x));
    /* A minute of slack for clocks that are a little behind. */
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
         X509_time_adj_ex(X509_getm_notAfter(x), kind == LEAF_CA ? CA_DAYS : LEAF_DAYS, 0, NULL);
    ok = ok && X509_set_pubkey(x, key) == 1;
    X509 *iss = ca ? ca : x;
    ok = ok && add_ext(x, iss, NID_subject_key_identifier, "hash") == 0;
    if (kind != LEAF_CA)
        ok = ok && add_ext(x, iss, NID_authority_key_identifier, "keyid:always") == 0;
    switch (kind) {
    case LEAF_CA:
        ok = ok && add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
        break;
    case LEAF_SERVER:
        ok = ok && add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(x, iss, NID_ext_key_usage, "serverAuth") == 0 &&
             add_ext(x, iss, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") == 0;
        break;
    case LEAF_CLIENT:
        ok = ok && add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(x, iss, NID_ext_key_usage, "clientAuth") == 0;
        break;
    case LEAF_EXAMPLE:
        ok = ok && add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(x, iss, NID_ext_key_usage, "serverAuth") == 0 &&
             add_ext(x, iss, NID_subject_alt_name, "DNS:device-001.example.test") == 0;
        break;
    }
    ok = ok && X509_sign(x, ca_key ? ca_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

int cf_daemon_cert_names(const char *pem_file, char **issuer, char **subject, char *err,
                         size_t errlen)
{
    X509 *x = read_cert(pem_file);
    if (!x) {
        cf_errf(err, errlen, "%s: not a PEM certificate", pem_file);
        return CF_EPARSE;
    }
    *issuer = cf_api_dn_text(X509_get_issuer_name(x));
    *subject = cf_api_dn_text(X509_get_subject_name(x));
    X509_free(x);
    if (!*issuer || !*subject) {
        free(*issuer);
        free(*subject);
        *issuer = *subject = NULL;
        cf_errf(err, errlen, "%s: the names cannot be printed", pem_file);
        return CF_EPARSE;
    }
    return 0;
}

static void path_in(char *out, size_t outlen, const char *dir, const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
}

/* Makes a leaf with a new key unless both files exist. */
static int ensure_leaf(enum leaf_kind kind, const char *cn, const char *cert_path,
                       const char *key_path, X509 *ca, EVP_PKEY *ca_key, bool force, bool *made,
                       char *err, size_t errlen)
{
    if (!force && exists(cert_path) && (!key_path || exists(key_path)))
        return 0;
    EVP_PKEY *k = new_key();
    X509 *x = k ? make_cert(kind, cn, k, ca, ca_key) : NULL;
    int rc = x ? 0 : CF_EIO;
    if (rc)
        cf_errf(err, errlen, "cannot make the %s certificate", cn);
    if (!rc && key_path)
        rc = write_key(key_path, k, err, errlen);
    if (!rc)
        rc = write_certs(cert_path, x, kind == LEAF_SERVER ? ca : NULL, err, errlen);
    X509_free(x);
    EVP_PKEY_free(k);
    if (!rc)
        *made = true;
    return rc;
}

int cf_daemon_pki_ensure(const char *data_dir, struct cf_daemon_pki *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char dir[400];
    if (snprintf(dir, sizeof dir, "%s/tls", data_dir) >= (int)sizeof dir) {
        cf_errf(err, errlen, "data_dir is too long: %s", data_dir);
        return CF_ELIMIT;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        cf_errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return CF_EIO;
    }
    path_in(out->ca_cert, sizeof out->ca_cert, dir, "ca.pem");
    path_in(out->ca_key, sizeof out->ca_key, dir, "ca.key");
    path_in(out->server_cert, sizeof out->server_cert, dir, "server.pem");
    path_in(out->server_key, sizeof out->server_key, dir, "server.key");
    path_in(out->admin_cert, sizeof out->admin_cert, dir, "admin.pem");
    path_in(out->admin_key, sizeof out->admin_key, dir, "admin.key");
    path_in(out->example_pem, sizeof out->example_pem, dir, "example-cert.pem");
    path_in(out->example_b64, sizeof out->example_b64, dir, "example-cert.b64");

    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    bool new_ca = !exists(out->ca_cert) || !exists(out->ca_key);
    int rc = 0;
    if (new_ca) {
        ca_key = new_key();
        ca = ca_key ? make_cert(LEAF_CA, "certflow local CA", ca_key, NULL, NULL) : NULL;
        if (!ca) {
            cf_errf(err, errlen, "cannot make the local CA");
            rc = CF_EIO;
        }
        if (!rc)
            rc = write_key(out->ca_key, ca_key, err, errlen);
        if (!rc)
            rc = write_certs(out->ca_cert, ca, NULL, err, errlen);
        out->created = !rc;
    } else {
        ca = read_cert(out->ca_cert);
        ca_key = read_key(out->ca_key);
        if (!ca || !ca_key) {
            cf_errf(err, errlen, "%s or %s cannot be read; remove both to make a new CA",
                    out->ca_cert, out->ca_key);
            rc = CF_EPARSE;
        }
    }
    bool made = false;
    if (!rc)
        rc = ensure_leaf(LEAF_SERVER, "localhost", out->server_cert, out->server_key, ca, ca_key,
                         new_ca, &made, err, errlen);
    if (!rc)
        rc = ensure_leaf(LEAF_CLIENT, "certflow admin", out->admin_cert, out->admin_key, ca, ca_key,
                         new_ca, &made, err, errlen);
    if (!rc && (new_ca || !exists(out->example_pem) || !exists(out->example_b64))) {
        EVP_PKEY *k = new_key();
        X509 *x = k ? make_cert(LEAF_EXAMPLE, "device-001.example.test", k, ca, ca_key) : NULL;
        rc = x ? 0 : CF_EIO;
        if (rc)
            cf_errf(err, errlen, "cannot make the example certificate");
        if (!rc)
            rc = write_certs(out->example_pem, x, NULL, err, errlen);
        if (!rc)
            rc = write_b64(out->example_b64, x, err, errlen);
        X509_free(x);
        EVP_PKEY_free(k);
        made = made || !rc;
    }
    if (made)
        out->created = true;
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}
