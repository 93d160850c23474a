/*
 * Tests of the embedded CA (ca/embedded.c), template procedures (ca/policy.c) and CSR decoding
 * (ca/x509.c). A CA is created once in a temporary directory and shared by most tests; CSRs are
 * made here with OpenSSL's own X509_REQ API, and issued chains are checked by the `openssl verify`
 * command (a child process, -x509_strict) as well as in-process with X509_verify_cert(), so that
 * the tests do not trust the code they test. Policy parsing is checked by its exact messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "base/iso8601.h"
#include "ca/ca.h"
#include "ca/embedded.h"
#include "ca/policy.h"
#include "ca/x509.h"

#define DAY_MS 86400000ULL

/* The shared CA and keys, made once by the group setup. */
static char g_dir[64];
static struct cf_ca *g_ca;
static EVP_PKEY *g_ec, *g_ec2, *g_rsa2048, *g_rsa1024, *g_p521, *g_ed25519;

/* ---- helpers -------------------------------------------------------------------------------- */

static EVP_PKEY *ec_key(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    assert_non_null(k);
    return k;
}

static EVP_PKEY *rsa_key(size_t bits)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
    assert_non_null(k);
    return k;
}

static char *path_in(const char *dir, const char *name)
{
    return cf_xasprintf("%s/%s", dir, name);
}

static char *read_text(const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    char err[256];
    if (cf_read_file(path, 1 << 20, &data, &len, err, sizeof(err)))
        fail_msg("%s", err);
    return (char *)data;
}

static void rm_rf(const char *dir)
{
    char *cmd = cf_xasprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static char *make_temp_dir(void)
{
    char *d = cf_xstrdup("/tmp/cf-ca-test.XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

/*
 * A CSR for `key` with the subject given as "CN=a/O=b" pairs separated by '/', and SANs in
 * OpenSSL's config syntax ("DNS:a.example.com,IP:192.0.2.1"); NULL for none. DER, or PEM when
 * `pem` is set.
 */
static uint8_t *make_csr(EVP_PKEY *key, const char *subject, const char *sans, bool pem,
                         size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    X509_NAME *name = X509_REQ_get_subject_name(req);
    if (subject && *subject) {
        char *copy = cf_xstrdup(subject);
        for (char *part = copy; part;) {
            char *next = strchr(part, '/');
            if (next)
                *next++ = '\0';
            char *eq = strchr(part, '=');
            assert_non_null(eq);
            *eq = '\0';
            /* As a requester would: string types as RFC 5280 says, except where the test wants
             * a value beyond its bounds, which only a raw UTF8String can carry. */
            if (!X509_NAME_add_entry_by_txt(name, part, MBSTRING_UTF8, (unsigned char *)eq + 1, -1,
                                            -1, 0)) {
                ERR_clear_error();
                assert_int_equal(X509_NAME_add_entry_by_txt(name, part, V_ASN1_UTF8STRING,
                                                            (unsigned char *)eq + 1, -1, -1, 0),
                                 1);
            }
            part = next;
        }
        free(copy);
    }
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    if (sans) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, sans);
        assert_non_null(ext);
        sk_X509_EXTENSION_push(exts, ext);
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    int id = EVP_PKEY_get_base_id(key);
    const EVP_MD *md = (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? NULL : EVP_sha256();
    assert_true(X509_REQ_sign(req, key, md) > 0);
    uint8_t *out;
    if (pem) {
        BIO *b = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
        char *data;
        long n = BIO_get_mem_data(b, &data);
        /* NUL-terminated so that the tests may treat it as text; `len` excludes the NUL. */
        out = cf_xmalloc((size_t)n + 1);
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
        *len = (size_t)n;
        BIO_free(b);
    } else {
        int n = i2d_X509_REQ(req, NULL);
        assert_true(n > 0);
        out = cf_xmalloc((size_t)n);
        unsigned char *p = out;
        i2d_X509_REQ(req, &p);
        *len = (size_t)n;
    }
    X509_REQ_free(req);
    return out;
}

static struct cf_ca_policy *policy(const char *json)
{
    struct cf_ca_policy *p = NULL;
    char err[512] = "";
    if (cf_ca_policy_parse(json, &p, err, sizeof(err)))
        fail_msg("policy %s does not parse: %s", json, err);
    return p;
}

/* Issues and expects `want`; on CF_CA_OK returns the parsed certificate (caller frees). */
static X509 *issue_x(const struct cf_ca_request *req, enum cf_ca_status want,
                     struct cf_ca_issued *out, char *err, size_t errlen)
{
    enum cf_ca_status st = cf_ca_issue(g_ca, req, out, err, errlen);
    if (st != want)
        fail_msg("issue: got %s, want %s: %s", cf_ca_status_code(st), cf_ca_status_code(want), err);
    if (st != CF_CA_OK) {
        assert_null(out->der);
        assert_true(strlen(err) > 0);
        return NULL;
    }
    const unsigned char *p = out->der;
    X509 *x = d2i_X509(NULL, &p, (long)out->der_len);
    assert_non_null(x);
    assert_ptr_equal(p, out->der + out->der_len);
    return x;
}

/* Issues `csr` under `pol` and returns the certificate, failing the test on any error. */
static X509 *issue_ok(const uint8_t *csr, size_t len, const struct cf_ca_policy *pol,
                      struct cf_ca_issued *out)
{
    struct cf_ca_request req = {.csr = csr, .csr_len = len, .policy = pol};
    char err[512] = "";
    return issue_x(&req, CF_CA_OK, out, err, sizeof(err));
}

static enum cf_ca_status issue_status(const uint8_t *csr, size_t len,
                                      const struct cf_ca_policy *pol, char *err, size_t errlen)
{
    struct cf_ca_request req = {.csr = csr, .csr_len = len, .policy = pol};
    struct cf_ca_issued out;
    enum cf_ca_status st = cf_ca_issue(g_ca, &req, &out, err, errlen);
    if (st == CF_CA_OK)
        cf_ca_issued_clear(&out);
    else
        assert_null(out.der);
    return st;
}

/* Runs `openssl verify` on the certificate against the CA directory's files; returns its exit
 * status and leaves its output in `outbuf`. */
static int openssl_verify(const char *dir, const uint8_t *der, size_t len, const char *purpose,
                          char *outbuf, size_t outlen)
{
    char *leaf = path_in(dir, "leaf-under-test.pem");
    char *pem = cf_cert_pem(der, len);
    FILE *f = fopen(leaf, "w");
    assert_non_null(f);
    fputs(pem, f);
    fclose(f);
    free(pem);
    char *cmd = cf_xasprintf("openssl verify -CAfile '%s/root.pem' -untrusted '%s/issuing.pem' "
                             "-x509_strict -purpose %s '%s' 2>&1",
                             dir, dir, purpose, leaf);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(outbuf, 1, outlen - 1, p);
    outbuf[n] = '\0';
    int status = pclose(p);
    unlink(leaf);
    free(leaf);
    free(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* X509_verify_cert() with the CA's root as the only trust anchor, strict, for `purpose`. */
static int verify_in_process(const struct cf_ca *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, (X509 *)cf_ca_root_cert(ca));
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    sk_X509_push(untrusted, (X509 *)cf_ca_issuing_cert(ca));
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, untrusted);
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_X509_STRICT);
    X509_VERIFY_PARAM_set_purpose(vp, purpose);
    int ok = X509_verify_cert(ctx);
    int e = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    return ok == 1 ? 0 : e;
}

static const ASN1_OCTET_STRING *ext_skid(X509 *x)
{
    return X509_get0_subject_key_id(x);
}

/* SHA-1 of the subjectPublicKey bits, RFC 5280 §4.2.1.2 method 1, computed here. */
static void sha1_of_key(X509 *x, unsigned char out[20])
{
    const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(x);
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(ASN1_STRING_get0_data(bits), (size_t)ASN1_STRING_length(bits), out,
                                &n, EVP_sha1(), NULL),
                     1);
    assert_int_equal(n, 20);
}

static uint64_t time_ms(const ASN1_TIME *t)
{
    uint64_t ms = 0;
    assert_int_equal(cf_asn1_time_ms(t, &ms), 0);
    return ms;
}

/* Checks what every end-entity certificate of the CA must have. */
static void check_leaf_basics(X509 *x)
{
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    /* Serial: positive, at most 127 bits, and (with probability 1 - 2^-63) more than 64. */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    assert_false(BN_is_zero(bn));
    assert_true(BN_num_bits(bn) <= 127);
    assert_true(BN_num_bits(bn) > 64);
    BN_free(bn);
    /* Issuer and AKI name the issuing CA. */
    X509 *issuing = (X509 *)cf_ca_issuing_cert(g_ca);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(issuing)), 0);
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    assert_non_null(akid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(issuing)), 0);
    /* SKI is the SHA-1 of the key. */
    unsigned char want[20];
    sha1_of_key(x, want);
    const ASN1_OCTET_STRING *skid = ext_skid(x);
    assert_non_null(skid);
    assert_int_equal(ASN1_STRING_length(skid), 20);
    assert_memory_equal(ASN1_STRING_get0_data(skid), want, 20);
    /* basicConstraints critical CA:FALSE; keyUsage critical. */
    int idx = X509_get_ext_by_NID(x, NID_basic_constraints, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
    assert_int_equal(X509_check_ca(x), 0);
    idx = X509_get_ext_by_NID(x, NID_key_usage, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
}

/* ---- group setup ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    char *d = make_temp_dir();
    cf_strlcpy(g_dir, d, sizeof(g_dir));
    free(d);
    char *cadir = path_in(g_dir, "ca");
    char err[512] = "";
    if (cf_ca_init(cadir, NULL, err, sizeof(err)))
        fail_msg("init: %s", err);
    if (cf_ca_open(cadir, NULL, &g_ca, err, sizeof(err)))
        fail_msg("open: %s", err);
    free(cadir);
    g_ec = ec_key("P-256");
    g_ec2 = ec_key("P-256");
    g_p521 = ec_key("P-521");
    g_rsa2048 = rsa_key(2048);
    g_rsa1024 = rsa_key(1024);
    g_ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(g_ed25519);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cf_ca_close(g_ca);
    EVP_PKEY_free(g_ec);
    EVP_PKEY_free(g_ec2);
    EVP_PKEY_free(g_p521);
    EVP_PKEY_free(g_rsa2048);
    EVP_PKEY_free(g_rsa1024);
    EVP_PKEY_free(g_ed25519);
    rm_rf(g_dir);
    return 0;
}

static char *ca_dir(void)
{
    return path_in(g_dir, "ca");
}

/* ---- init and open -------------------------------------------------------------------------- */

static void test_init_files(void **state)
{
    (void)state;
    char *dir = ca_dir();
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    static const char *secret[] = {"root.key", "issuing.key", "passphrase"};
    for (size_t i = 0; i < CF_ARRAY_LEN(secret); i++) {
        char *p = path_in(dir, secret[i]);
        assert_int_equal(stat(p, &st), 0);
        if ((st.st_mode & 0777) != 0600)
            fail_msg("%s has mode %03o, want 0600", p, (unsigned)(st.st_mode & 0777));
        free(p);
    }
    /* The keys are encrypted PKCS#8, and nothing on disk holds a plaintext key. */
    static const char *keys[] = {"root.key", "issuing.key"};
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        char *p = path_in(dir, keys[i]);
        char *text = read_text(p);
        assert_non_null(strstr(text, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        assert_null(strstr(text, "-----BEGIN PRIVATE KEY-----"));
        assert_null(strstr(text, "-----BEGIN EC PRIVATE KEY-----"));
        /* Without the passphrase OpenSSL cannot read it... */
        BIO *b = BIO_new_mem_buf(text, -1);
        EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
        assert_null(k);
        BIO_free(b);
        ERR_clear_error();
        /* ...and with it the openssl command can: the format is the standard one. */
        char *cmd = cf_xasprintf("openssl pkey -in '%s' -passin 'file:%s/passphrase' -noout "
                                 ">/dev/null 2>&1",
                                 p, dir);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(text);
        free(p);
    }
    char *pass = path_in(dir, "passphrase");
    char *text = read_text(pass);
    assert_int_equal(strlen(text), 44); /* 43 characters of Base64 and a newline */
    free(text);
    free(pass);

    /* The CA certificates: names, constraints, key usage, key identifiers, validity. */
    X509 *root = (X509 *)cf_ca_root_cert(g_ca);
    X509 *issuing = (X509 *)cf_ca_issuing_cert(g_ca);
    struct cf_cert_info ri, ii;
    unsigned char *der = NULL;
    int n = i2d_X509(root, &der);
    assert_int_equal(cf_cert_info_from_der(der, (size_t)n, &ri, NULL, 0), 0);
    OPENSSL_free(der);
    der = NULL;
    n = i2d_X509(issuing, &der);
    assert_int_equal(cf_cert_info_from_der(der, (size_t)n, &ii, NULL, 0), 0);
    OPENSSL_free(der);
    assert_string_equal(ri.subject, "CN=certflow Root CA");
    assert_string_equal(ri.issuer, "CN=certflow Root CA");
    assert_string_equal(ii.subject, "CN=certflow Issuing CA");
    assert_string_equal(ii.issuer, "CN=certflow Root CA");
    uint64_t now = cf_now_ms();
    assert_true(ri.not_before_ms <= now && ri.not_before_ms >= now - 10 * 60 * 1000);
    /* 20 and 10 years, within the leap days they may span. */
    assert_true(ri.not_after_ms - ri.not_before_ms >= 7304 * DAY_MS - 1000);
    assert_true(ri.not_after_ms - ri.not_before_ms <= 7306 * DAY_MS);
    assert_true(ii.not_after_ms - ii.not_before_ms >= 3652 * DAY_MS - 1000);
    assert_true(ii.not_after_ms - ii.not_before_ms <= 3653 * DAY_MS);
    cf_cert_info_clear(&ri);
    cf_cert_info_clear(&ii);

    assert_int_equal(X509_check_ca(root), 1);
    assert_int_equal(X509_check_ca(issuing), 1);
    assert_int_equal(X509_get_pathlen(issuing), 0);
    assert_int_equal(X509_get_pathlen(root), -1);
    assert_int_equal(X509_get_key_usage(issuing), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_get_key_usage(root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    for (int i = 0; i < 2; i++) {
        X509 *x = i ? issuing : root;
        int idx = X509_get_ext_by_NID(x, NID_key_usage, -1);
        assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
        idx = X509_get_ext_by_NID(x, NID_basic_constraints, -1);
        assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
        unsigned char want[20];
        sha1_of_key(x, want);
        assert_memory_equal(ASN1_STRING_get0_data(X509_get0_subject_key_id(x)), want, 20);
    }
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(issuing), X509_get0_subject_key_id(root)),
        0);
    /* ECDSA P-256 by default. */
    EVP_PKEY *pub = X509_get0_pubkey(issuing);
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    char group[32];
    size_t glen;
    assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(X509_get_signature_nid(issuing), NID_ecdsa_with_SHA256);

    /* The chain text: issuing first, then the root. */
    const char *chain = cf_ca_chain_pem(g_ca);
    char *root_file = path_in(dir, "root.pem"), *issuing_file = path_in(dir, "issuing.pem");
    char *rt = read_text(root_file), *it = read_text(issuing_file);
    char *both = cf_xasprintf("%s%s", it, rt);
    assert_string_equal(chain, both);
    free(both);
    free(rt);
    free(it);
    free(root_file);
    free(issuing_file);
    free(dir);
}

static void test_init_refuses_existing(void **state)
{
    (void)state;
    char *dir = ca_dir();
    char *root_file = path_in(dir, "root.pem");
    char *before = read_text(root_file);
    char err[512] = "";
    assert_int_equal(cf_ca_init(dir, NULL, err, sizeof(err)), CF_EEXIST);
    assert_non_null(strstr(err, "already holds a CA"));
    assert_non_null(strstr(err, "force"));
    char *after = read_text(root_file);
    assert_string_equal(before, after);
    /* No temporary files are left behind. */
    char *cmd = cf_xasprintf("ls -A '%s' | grep -q '^\\.'", dir);
    assert_int_not_equal(system(cmd), 0);
    free(cmd);
    free(before);
    free(after);
    free(root_file);
    free(dir);
}

static void test_init_force_and_open_errors(void **state)
{
    (void)state;
    char *base = make_temp_dir();
    char *a = path_in(base, "a"), *b = path_in(base, "b");
    char err[512] = "";
    struct cf_ca *ca = NULL;
    struct cf_ca_init_opts opts = {
        .root_cn = "Test Root", .issuing_cn = "Test Issuing", .organization = "Example Org"};
    assert_int_equal(cf_ca_init(a, &opts, err, sizeof(err)), 0);
    assert_int_equal(cf_ca_init(b, NULL, err, sizeof(err)), 0);

    /* Names as configured. */
    assert_int_equal(cf_ca_open(a, NULL, &ca, err, sizeof(err)), 0);
    struct cf_cert_info info;
    unsigned char *der = NULL;
    int n = i2d_X509(cf_ca_issuing_cert(ca), &der);
    assert_int_equal(cf_cert_info_from_der(der, (size_t)n, &info, NULL, 0), 0);
    assert_string_equal(info.subject, "CN=Test Issuing,O=Example Org");
    assert_string_equal(info.issuer, "CN=Test Root,O=Example Org");
    cf_cert_info_clear(&info);
    OPENSSL_free(der);
    cf_ca_close(ca);

    /* force replaces the CA: a new root. */
    char *root_a = path_in(a, "root.pem");
    char *old = read_text(root_a);
    opts.force = true;
    assert_int_equal(cf_ca_init(a, &opts, err, sizeof(err)), 0);
    char *new_root = read_text(root_a);
    assert_string_not_equal(old, new_root);
    free(old);
    free(new_root);

    /* No CA at all. */
    char *none = path_in(base, "none");
    assert_int_equal(cf_ca_open(none, NULL, &ca, err, sizeof(err)), CF_ENOENT);
    assert_null(ca);
    assert_non_null(strstr(err, "holds no CA"));

    /* A wrong passphrase. */
    char *pass_a = path_in(a, "passphrase");
    FILE *f = fopen(pass_a, "w");
    fputs("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", f);
    fclose(f);
    assert_int_equal(cf_ca_open(a, NULL, &ca, err, sizeof(err)), CF_EAUTH);
    assert_non_null(strstr(err, "wrong passphrase"));

    /* Files of two CAs mixed: b's issuing certificate and key under a's root. */
    char *cmd =
        cf_xasprintf("cp '%s/issuing.pem' '%s/issuing.key' '%s/passphrase' '%s/'", b, b, b, a);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_int_equal(cf_ca_open(a, NULL, &ca, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "was not issued by"));
    /* And a key that is not the certificate's. */
    cmd = cf_xasprintf("cp '%s/root.pem' '%s/'", b, a);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_int_equal(cf_ca_open(a, NULL, &ca, err, sizeof(err)), 0);
    cf_ca_close(ca);
    cmd = cf_xasprintf("cp '%s/root.key' '%s/issuing.key'", b, a);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_int_equal(cf_ca_open(a, NULL, &ca, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "does not belong to"));

    /* A bad option is named. */
    struct cf_ca_init_opts bad = {.root_validity = "P20X"};
    char *c = path_in(base, "c");
    assert_int_equal(cf_ca_init(c, &bad, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "root_validity"));

    free(c);
    free(pass_a);
    free(none);
    free(root_a);
    free(a);
    free(b);
    rm_rf(base);
    free(base);
}

/* An RSA-3072 CA whose passphrase comes from a file (as a systemd credential would) and then
 * from the environment. */
static void test_rsa_ca_external_passphrase(void **state)
{
    (void)state;
    char *base = make_temp_dir();
    char *dir = path_in(base, "ca");
    char *cred = path_in(base, "certflow-ca-passphrase");
    FILE *f = fopen(cred, "w");
    fputs("correct horse battery staple\n", f);
    fclose(f);
    char err[512] = "";
    struct cf_ca_init_opts opts = {.key_alg = CF_CA_KEY_RSA_3072, .secret = {.file = cred}};
    assert_int_equal(cf_ca_init(dir, &opts, err, sizeof(err)), 0);
    /* No passphrase file in the directory: the keys cannot be opened from it alone. */
    char *pass = path_in(dir, "passphrase");
    struct stat st;
    assert_int_not_equal(stat(pass, &st), 0);
    struct cf_ca *ca = NULL;
    assert_int_equal(cf_ca_open(dir, NULL, &ca, err, sizeof(err)), CF_ENOENT);
    assert_non_null(strstr(err, "has no passphrase file"));
    struct cf_ca_secret secret = {.file = cred};
    assert_int_equal(cf_ca_open(dir, &secret, &ca, err, sizeof(err)), 0);
    EVP_PKEY *pub = X509_get0_pubkey(cf_ca_issuing_cert(ca));
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(pub), 3072);

    /* It issues, and openssl verifies the RSA-signed chain. */
    size_t len;
    uint8_t *csr = make_csr(g_ec, "CN=rsa-ca.example.com", "DNS:rsa-ca.example.com", false, &len);
    struct cf_ca_request req = {.csr = csr, .csr_len = len};
    struct cf_ca_issued out;
    assert_int_equal(cf_ca_issue(ca, &req, &out, err, sizeof(err)), CF_CA_OK);
    char vout[1024];
    int rc = openssl_verify(dir, out.der, out.der_len, "sslserver", vout, sizeof(vout));
    if (rc != 0)
        fail_msg("openssl verify failed: %s", vout);
    const unsigned char *p = out.der;
    X509 *x = d2i_X509(NULL, &p, (long)out.der_len);
    assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
    assert_int_equal(verify_in_process(ca, x, X509_PURPOSE_SSL_SERVER), 0);
    X509_free(x);
    cf_ca_issued_clear(&out);
    free(csr);
    cf_ca_close(ca);

    /* The same passphrase from the environment. */
    setenv("CF_TEST_CA_PASSPHRASE", "correct horse battery staple", 1);
    secret = (struct cf_ca_secret){.env = "CF_TEST_CA_PASSPHRASE"};
    assert_int_equal(cf_ca_open(dir, &secret, &ca, err, sizeof(err)), 0);
    cf_ca_close(ca);
    setenv("CF_TEST_CA_PASSPHRASE", "wrong horse battery staple", 1);
    assert_int_equal(cf_ca_open(dir, &secret, &ca, err, sizeof(err)), CF_EAUTH);
    unsetenv("CF_TEST_CA_PASSPHRASE");
    assert_int_equal(cf_ca_open(dir, &secret, &ca, err, sizeof(err)), CF_ENOENT);
    assert_non_null(strstr(err, "CF_TEST_CA_PASSPHRASE"));

    /* A chosen passphrase must not be short. */
    f = fopen(cred, "w");
    fputs("short\n", f);
    fclose(f);
    char *dir2 = path_in(base, "ca2");
    opts.key_alg = CF_CA_KEY_EC_P256;
    assert_int_equal(cf_ca_init(dir2, &opts, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "at least 16"));

    free(dir2);
    free(pass);
    free(cred);
    free(dir);
    rm_rf(base);
    free(base);
}

/* ---- issuing -------------------------------------------------------------------------------- */

static void check_validity_exact(X509 *x, const char *duration)
{
    struct cf_iso_duration d;
    assert_int_equal(cf_iso_parse_duration(duration, &d, NULL, 0), 0);
    uint64_t nb = time_ms(X509_get0_notBefore(x)), na = time_ms(X509_get0_notAfter(x));
    int64_t end;
    assert_int_equal(cf_iso_duration_add(&d, (int64_t)nb, &end, NULL, 0), 0);
    /* Inclusive validity: notAfter is the last second. */
    assert_int_equal(na + 1000, (uint64_t)end);
    uint64_t now = cf_now_ms();
    assert_true(nb <= now - CF_CA_BACKDATE_MS + 1000);
    assert_true(nb >= now - CF_CA_BACKDATE_MS - 60000);
}

static void test_issue_ec_p256(void **state)
{
    (void)state;
    size_t len;
    uint8_t *csr = make_csr(g_ec, "O=Example/CN=device-001.example.com",
                            "DNS:device-001.example.com,IP:192.0.2.10", false, &len);
    struct cf_ca_issued out;
    X509 *x = issue_ok(csr, len, NULL, &out);
    assert_false(out.replayed);
    check_leaf_basics(x);
    /* The default procedure on an EC key: digitalSignature only (keyEncipherment is for RSA),
     * serverAuth and clientAuth, one year. */
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    check_validity_exact(x, "P1Y");
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    /* Subject, SANs and key as requested. */
    assert_string_equal(out.info.subject, "CN=device-001.example.com,O=Example");
    assert_string_equal(out.info.issuer, "CN=certflow Issuing CA");
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    GENERAL_NAMES_free(gens);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), g_ec), 1);
    /* The facts for the store agree with the certificate. */
    struct cf_cert_info info;
    assert_int_equal(cf_cert_info_from_der(out.der, out.der_len, &info, NULL, 0), 0);
    assert_string_equal(info.serial, out.info.serial);
    assert_string_equal(info.sha256, out.info.sha256);
    assert_int_equal(info.not_after_ms, out.info.not_after_ms);
    assert_int_equal(strlen(info.serial) % 2, 0);
    for (const char *c = info.serial; *c; c++)
        assert_true((*c >= '0' && *c <= '9') || (*c >= 'A' && *c <= 'F'));
    char sha[65];
    cf_sha256_hex(out.der, out.der_len, sha);
    assert_string_equal(info.sha256, sha);
    cf_cert_info_clear(&info);

    char *dir = ca_dir();
    char vout[1024];
    int rc = openssl_verify(dir, out.der, out.der_len, "sslserver", vout, sizeof(vout));
    if (rc != 0 || !strstr(vout, ": OK"))
        fail_msg("openssl verify: %s", vout);
    rc = openssl_verify(dir, out.der, out.der_len, "sslclient", vout, sizeof(vout));
    if (rc != 0)
        fail_msg("openssl verify -purpose sslclient: %s", vout);
    assert_int_equal(verify_in_process(g_ca, x, X509_PURPOSE_SSL_SERVER), 0);
    free(dir);
    X509_free(x);
    cf_ca_issued_clear(&out);
    free(csr);
}

static void test_issue_rsa2048(void **state)
{
    (void)state;
    size_t len;
    uint8_t *csr = make_csr(g_rsa2048, "CN=rsa.example.com", "DNS:rsa.example.com", true, &len);
    struct cf_ca_issued out;
    X509 *x = issue_ok(csr, len, NULL, &out);
    check_leaf_basics(x);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), g_rsa2048), 1);
    char *dir = ca_dir();
    char vout[1024];
    int rc = openssl_verify(dir, out.der, out.der_len, "sslserver", vout, sizeof(vout));
    if (rc != 0)
        fail_msg("openssl verify: %s", vout);
    assert_int_equal(verify_in_process(g_ca, x, X509_PURPOSE_SSL_SERVER), 0);
    free(dir);
    X509_free(x);
    cf_ca_issued_clear(&out);
    free(csr);
}

static void test_serials_differ(void **state)
{
    (void)state;
    size_t len;
    uint8_t *csr = make_csr(g_ec, "CN=same.example.com", NULL, false, &len);
    char *serials[4];
    for (int i = 0; i < 4; i++) {
        struct cf_ca_issued out;
        X509 *x = issue_ok(csr, len, NULL, &out);
        serials[i] = cf_xstrdup(out.info.serial);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(serials[i], serials[j]);
        X509_free(x);
        cf_ca_issued_clear(&out);
    }
    for (int i = 0; i < 4; i++)
        free(serials[i]);
    free(csr);
}

static void test_rsa1024_refused(void **state)
{
    (void)state;
    struct cf_ca_policy *p = policy("{\"keyTypes\": {\"RSA\": 2048}}");
    size_t len;
    uint8_t *csr = make_csr(g_rsa1024, "CN=weak.example.com", NULL, false, &len);
    char err[512] = "";
    assert_int_equal(issue_status(csr, len, p, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_string_equal(err, "RSA key of 1024 bits is below the template's minimum of 2048");
    assert_string_equal(cf_ca_status_code(CF_CA_REQUEST_FAILED), "CaRequestFailed");
    /* Also with the default procedure, and for key types the template does not allow. */
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    free(csr);
    csr = make_csr(g_p521, "CN=p521.example.com", NULL, false, &len);
    assert_int_equal(issue_status(csr, len, p, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_string_equal(err, "EC keys are not allowed by the template (it allows RSA of at least "
                             "2048 bits)");
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_string_equal(err, "EC key on curve P-521 is not allowed by the template (it allows RSA "
                             "of at least 2048 bits, EC on P-256 or P-384)");
    free(csr);
    csr = make_csr(g_ed25519, "CN=ed.example.com", NULL, false, &len);
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(err, "Ed25519 keys are not allowed"));
    free(csr);
    cf_ca_policy_free(p);
}

static void test_ed25519_allowed(void **state)
{
    (void)state;
    struct cf_ca_policy *p =
        policy("{\"keyTypes\": {\"Ed25519\": true}, \"extendedKeyUsage\": [\"clientAuth\"]}");
    size_t len;
    uint8_t *csr = make_csr(g_ed25519, "CN=ed.example.com", NULL, false, &len);
    struct cf_ca_issued out;
    X509 *x = issue_ok(csr, len, p, &out);
    check_leaf_basics(x);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), g_ed25519), 1);
    assert_int_equal(verify_in_process(g_ca, x, X509_PURPOSE_SSL_CLIENT), 0);
    X509_free(x);
    cf_ca_issued_clear(&out);
    free(csr);
    cf_ca_policy_free(p);
}

/* Requests that are valid PKCS#10 but unusual: a PSS signature is fine; explicit EC curve
 * parameters are not allowed in PKIX (RFC 5480 §2.1.1), even for a curve OpenSSL recognises. */
static void test_unusual_csrs(void **state)
{
    (void)state;
    char err[512] = "";
    X509_REQ *req = X509_REQ_new();
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                               (const unsigned char *)"pss.example.com", -1, -1, 0);
    X509_REQ_set_pubkey(req, g_rsa2048);
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(EVP_DigestSignInit(mctx, &pctx, EVP_sha256(), NULL, g_rsa2048), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
    assert_true(X509_REQ_sign_ctx(req, mctx) > 0);
    EVP_MD_CTX_free(mctx);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    X509_REQ_free(req);
    struct cf_ca_issued out;
    X509 *x = issue_ok(der, (size_t)n, NULL, &out);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), g_rsa2048), 1);
    X509_free(x);
    cf_ca_issued_clear(&out);
    OPENSSL_free(der);

    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("group", (char *)"P-256", 0),
        OSSL_PARAM_construct_utf8_string("encoding", (char *)"explicit", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *explicit_key = NULL;
    assert_int_equal(EVP_PKEY_keygen_init(kctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_params(kctx, params), 1);
    assert_int_equal(EVP_PKEY_generate(kctx, &explicit_key), 1);
    EVP_PKEY_CTX_free(kctx);
    size_t len;
    uint8_t *csr = make_csr(explicit_key, "CN=explicit.example.com", NULL, false, &len);
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(err, "EC keys with explicit curve parameters are not allowed"));
    free(csr);
    EVP_PKEY_free(explicit_key);
}

static void test_bad_csrs_are_common_errors(void **state)
{
    (void)state;
    size_t len;
    uint8_t *csr = make_csr(g_ec, "CN=tamper.example.com", NULL, false, &len);
    char err[512] = "";

    /* The signature's last byte changed. */
    uint8_t *t = cf_xmemdup(csr, len);
    t[len - 1] ^= 0x01;
    assert_int_equal(issue_status(t, len, NULL, err, sizeof(err)), CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "signature does not verify"));
    free(t);
    /* The subject changed after signing: "tamper" -> "tamqer". */
    t = cf_xmemdup(csr, len);
    uint8_t *hit = NULL;
    for (size_t i = 0; i + 6 <= len && !hit; i++) {
        if (memcmp(t + i, "tamper", 6) == 0)
            hit = t + i;
    }
    assert_non_null(hit);
    hit[3] = 'q';
    assert_int_equal(issue_status(t, len, NULL, err, sizeof(err)), CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "signature does not verify"));
    free(t);

    /* Bytes after the DER. */
    t = cf_xmalloc(len + 2);
    memcpy(t, csr, len);
    t[len] = 0;
    t[len + 1] = 0;
    assert_int_equal(issue_status(t, len + 2, NULL, err, sizeof(err)), CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "trailing data: 2 bytes follow the CSR"));
    free(t);
    /* Truncated. */
    assert_int_equal(issue_status(csr, len - 1, NULL, err, sizeof(err)), CF_CA_COMMON_ERROR);

    /* Garbage, text, empty. */
    static const uint8_t garbage[] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02};
    assert_int_equal(issue_status(garbage, sizeof(garbage), NULL, err, sizeof(err)),
                     CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "neither DER"));
    assert_int_equal(issue_status((const uint8_t *)"hello", 5, NULL, err, sizeof(err)),
                     CF_CA_COMMON_ERROR);
    static const uint8_t seq[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    assert_int_equal(issue_status(seq, sizeof(seq), NULL, err, sizeof(err)), CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "not a DER PKCS#10 request"));
    assert_int_equal(issue_status(NULL, 0, NULL, err, sizeof(err)), CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "no CSR"));
    assert_string_equal(cf_ca_status_code(CF_CA_COMMON_ERROR), "CommonError");

    /* A certificate is not a CSR. */
    const X509 *root = cf_ca_root_cert(g_ca);
    unsigned char *der = NULL;
    int n = i2d_X509(root, &der);
    assert_int_equal(issue_status(der, (size_t)n, NULL, err, sizeof(err)), CF_CA_COMMON_ERROR);
    char *pem = cf_cert_pem(der, (size_t)n);
    assert_int_equal(issue_status((uint8_t *)pem, strlen(pem), NULL, err, sizeof(err)),
                     CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "\"CERTIFICATE\", not a \"CERTIFICATE REQUEST\""));
    free(pem);
    OPENSSL_free(der);
    free(csr);
}

static void test_pem_forms(void **state)
{
    (void)state;
    size_t len;
    uint8_t *pem = make_csr(g_ec, "CN=pem.example.com", NULL, true, &len);
    char err[512] = "";
    assert_int_equal(issue_status(pem, len, NULL, err, sizeof(err)), CF_CA_OK);
    /* With explanatory text before it, as `openssl req -text` writes. */
    char *text = cf_xasprintf("Certificate Request:\n    Data: ...\n%.*s\n\n", (int)len, pem);
    assert_int_equal(issue_status((uint8_t *)text, strlen(text), NULL, err, sizeof(err)), CF_CA_OK);
    free(text);
    /* The old label. */
    char *body = strstr((char *)pem, "\n") + 1;
    char *end = strstr(body, "-----END");
    text = cf_xasprintf("-----BEGIN NEW CERTIFICATE REQUEST-----\r\n%.*s-----END NEW "
                        "CERTIFICATE REQUEST-----\r\n",
                        (int)(end - body), body);
    assert_int_equal(issue_status((uint8_t *)text, strlen(text), NULL, err, sizeof(err)), CF_CA_OK);
    free(text);
    /* Junk after the END line. */
    text = cf_xasprintf("%.*sjunk\n", (int)len, pem);
    assert_int_equal(issue_status((uint8_t *)text, strlen(text), NULL, err, sizeof(err)),
                     CF_CA_COMMON_ERROR);
    assert_non_null(strstr(err, "follow the CSR's END line"));
    free(text);
    /* Broken Base64. */
    text = cf_xstrdup((char *)pem);
    text[40] = '!';
    assert_int_equal(issue_status((uint8_t *)text, strlen(text), NULL, err, sizeof(err)),
                     CF_CA_COMMON_ERROR);
    free(text);
    free(pem);
}

static void test_san_policy(void **state)
{
    (void)state;
    struct cf_ca_policy *p = policy("{\"san\": {\"domains\": [\"example.com\"], \"max\": 3}}");
    char err[512] = "";
    size_t len;
    struct {
        const char *sans;
        enum cf_ca_status want;
        const char *msg;
    } cases[] = {
        {"DNS:a.example.com", CF_CA_OK, NULL},
        {"DNS:example.com,DNS:A.B.Example.COM", CF_CA_OK, NULL},
        {"DNS:evil.test", CF_CA_REQUEST_FAILED,
         "SAN DNS:evil.test is outside the template's allowed domains (example.com)"},
        {"DNS:notexample.com", CF_CA_REQUEST_FAILED, "outside the template's allowed domains"},
        {"DNS:example.com.evil.test", CF_CA_REQUEST_FAILED, "outside"},
        {"DNS:*.example.com", CF_CA_REQUEST_FAILED,
         "SAN DNS:*.example.com is a wildcard, which the template does not allow"},
        {"DNS:bad_name.example.com", CF_CA_REQUEST_FAILED, "is not a valid DNS name"},
        {"DNS:10.0.0.1", CF_CA_REQUEST_FAILED, "numeric label"},
        {"email:someone@example.com", CF_CA_OK, NULL},
        {"email:someone@evil.test", CF_CA_REQUEST_FAILED, "SAN email:someone@evil.test is outside"},
        {"URI:https://www.example.com/x", CF_CA_OK, NULL},
        {"URI:https://user@www.evil.test:443/x", CF_CA_REQUEST_FAILED, "outside"},
        {"URI:urn:uuid:1234", CF_CA_REQUEST_FAILED, "has no host"},
        {"IP:192.0.2.1", CF_CA_OK, NULL},
        {"RID:1.2.3.4", CF_CA_REQUEST_FAILED,
         "SAN type registeredID is not allowed by the template (it allows dns, ip, email, uri)"},
        {"DNS:a.example.com,DNS:b.example.com,DNS:c.example.com,DNS:d.example.com",
         CF_CA_REQUEST_FAILED,
         "4 subject alternative names are more than the template's maximum of 3"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        uint8_t *csr = make_csr(g_ec, "CN=san-test", cases[i].sans, false, &len);
        enum cf_ca_status st = issue_status(csr, len, p, err, sizeof(err));
        if (st != cases[i].want)
            fail_msg("%s: got %s, want %s: %s", cases[i].sans, cf_ca_status_code(st),
                     cf_ca_status_code(cases[i].want), err);
        if (cases[i].msg && !strstr(err, cases[i].msg))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].sans, err, cases[i].msg);
        free(csr);
    }
    cf_ca_policy_free(p);

    /* Wildcards when the template allows them; never over a single label. */
    p = policy("{\"san\": {\"wildcards\": true, \"domains\": [\"example.com\"]}}");
    uint8_t *csr = make_csr(g_ec, "CN=w", "DNS:*.example.com", false, &len);
    assert_int_equal(issue_status(csr, len, p, err, sizeof(err)), CF_CA_OK);
    free(csr);
    csr = make_csr(g_ec, "CN=w", "DNS:*.com", false, &len);
    assert_int_equal(issue_status(csr, len, p, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    free(csr);
    cf_ca_policy_free(p);

    /* A template that requires a SAN; only DNS. */
    p = policy("{\"san\": {\"required\": true, \"types\": [\"dns\"]}}");
    csr = make_csr(g_ec, "CN=nosan", NULL, false, &len);
    assert_int_equal(issue_status(csr, len, p, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(err, "requires at least one subject alternative name"));
    free(csr);
    csr = make_csr(g_ec, "CN=ip", "IP:192.0.2.1", false, &len);
    assert_int_equal(issue_status(csr, len, p, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(err, "SAN type ip is not allowed by the template (it allows dns)"));
    free(csr);
    cf_ca_policy_free(p);
}

static void test_subject_policy(void **state)
{
    (void)state;
    char err[512] = "";
    size_t len;
    /* Default: CN required; O, OU, C, L, ST allowed. */
    uint8_t *csr = make_csr(g_ec, "O=Example", "DNS:x.example.com", false, &len);
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_string_equal(err, "the template requires the subject attribute CN, and the subject has "
                             "none");
    free(csr);
    csr = make_csr(g_ec, "CN=x/title=Boss", NULL, false, &len);
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_string_equal(err, "subject attribute title is not allowed by the template (it allows "
                             "CN, C, ST, L, O, OU)");
    free(csr);
    csr = make_csr(g_ec, "CN=a/CN=b", NULL, false, &len);
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(err, "2 CN attributes"));
    free(csr);
    /* RFC 5280 upper bounds, in characters: 64 two-byte characters are fine, 65 are not. */
    struct cf_buf cn;
    cf_buf_init(&cn);
    cf_buf_puts(&cn, "CN=");
    for (int i = 0; i < 64; i++)
        cf_buf_puts(&cn, "\xc3\xa4");
    csr = make_csr(g_ec, cn.data, NULL, false, &len);
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_OK);
    free(csr);
    cf_buf_puts(&cn, "a");
    csr = make_csr(g_ec, cn.data, NULL, false, &len);
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_string_equal(err, "subject attribute CN is 65 characters long, more than the 64 that "
                             "RFC 5280 allows");
    free(csr);
    cf_buf_free(&cn);

    /* A template with no required attribute accepts an empty subject when there is a SAN, whose
     * extension is then critical (RFC 5280 §4.2.1.6); with neither it refuses. */
    struct cf_ca_policy *p = policy("{\"subject\": {\"required\": [], \"allowed\": []}}");
    csr = make_csr(g_ec, NULL, "DNS:nosubject.example.com", false, &len);
    struct cf_ca_issued out;
    X509 *x = issue_ok(csr, len, p, &out);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
    assert_int_equal(verify_in_process(g_ca, x, X509_PURPOSE_SSL_SERVER), 0);
    X509_free(x);
    cf_ca_issued_clear(&out);
    free(csr);
    csr = make_csr(g_ec, NULL, NULL, false, &len);
    assert_int_equal(issue_status(csr, len, p, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(err, "neither a subject nor a subject alternative name"));
    free(csr);
    cf_ca_policy_free(p);
}

static void test_overrides(void **state)
{
    (void)state;
    size_t len;
    uint8_t *csr = make_csr(g_ec2, "CN=from-csr.example.com/OU=Ignored", "DNS:from-csr.example.com",
                            false, &len);
    struct cf_ca_rdn subject[] = {{"C", "SE"}, {"O", "Example Org"}, {"CN", "über.example.com"}};
    struct cf_ca_san sans[] = {{CF_CA_SAN_DNS, "over.example.com"},
                               {CF_CA_SAN_IP, "2001:db8::7"},
                               {CF_CA_SAN_EMAIL, "ops@example.com"}};
    struct cf_ca_overrides ov = {.set_subject = true,
                                 .subject = subject,
                                 .n_subject = CF_ARRAY_LEN(subject),
                                 .set_sans = true,
                                 .sans = sans,
                                 .n_sans = CF_ARRAY_LEN(sans)};
    struct cf_ca_request req = {.csr = csr, .csr_len = len, .overrides = &ov};
    struct cf_ca_issued out;
    char err[512] = "";
    X509 *x = issue_x(&req, CF_CA_OK, &out, err, sizeof(err));
    check_leaf_basics(x);
    assert_string_equal(out.info.subject, "CN=\\C3\\BCber.example.com,O=Example Org,C=SE");
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 3);
    GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(g->type, GEN_DNS);
    assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName), "over.example.com");
    g = sk_GENERAL_NAME_value(gens, 1);
    assert_int_equal(g->type, GEN_IPADD);
    assert_int_equal(ASN1_STRING_length(g->d.iPAddress), 16);
    g = sk_GENERAL_NAME_value(gens, 2);
    assert_int_equal(g->type, GEN_EMAIL);
    GENERAL_NAMES_free(gens);
    /* The key is still the CSR's. */
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), g_ec2), 1);
    X509_free(x);
    cf_ca_issued_clear(&out);

    /* Overrides go through the same policy. */
    struct cf_ca_rdn bad_attr[] = {{"CN", "x"}, {"title", "Boss"}};
    ov.subject = bad_attr;
    ov.n_subject = 2;
    issue_x(&req, CF_CA_REQUEST_FAILED, &out, err, sizeof(err));
    assert_non_null(strstr(err, "subject attribute title is not allowed"));
    struct cf_ca_rdn unknown[] = {{"Nickname", "x"}};
    ov.subject = unknown;
    ov.n_subject = 1;
    issue_x(&req, CF_CA_COMMON_ERROR, &out, err, sizeof(err));
    assert_non_null(strstr(err, "unknown attribute \"Nickname\""));
    struct cf_ca_rdn bad_country[] = {{"CN", "x"}, {"C", "Sweden"}};
    ov.subject = bad_country;
    ov.n_subject = 2;
    issue_x(&req, CF_CA_COMMON_ERROR, &out, err, sizeof(err));
    assert_non_null(strstr(err, "subject attribute C given for the certificate cannot be encoded"));
    ov.subject = subject;
    ov.n_subject = CF_ARRAY_LEN(subject);
    struct cf_ca_san bad_ip[] = {{CF_CA_SAN_IP, "192.0.2.300"}};
    ov.sans = bad_ip;
    ov.n_sans = 1;
    issue_x(&req, CF_CA_COMMON_ERROR, &out, err, sizeof(err));
    assert_non_null(strstr(err, "is not an IP address"));
    ov.sans = sans;
    ov.n_sans = CF_ARRAY_LEN(sans);

    /* A template that takes names only from the CSR refuses overrides; one that takes them only
     * from the process needs them. */
    struct cf_ca_policy *p = policy("{\"subject\": {\"source\": \"csr\"}}");
    req.policy = p;
    issue_x(&req, CF_CA_REQUEST_FAILED, &out, err, sizeof(err));
    assert_non_null(strstr(err, "takes the subject from the CSR"));
    cf_ca_policy_free(p);
    p = policy("{\"san\": {\"source\": \"override\"}, \"subject\": {\"source\": \"override\"}}");
    req.policy = p;
    req.overrides = NULL;
    issue_x(&req, CF_CA_COMMON_ERROR, &out, err, sizeof(err));
    assert_non_null(strstr(err, "takes the subject from the process"));
    req.overrides = &ov;
    x = issue_x(&req, CF_CA_OK, &out, err, sizeof(err));
    X509_free(x);
    cf_ca_issued_clear(&out);
    cf_ca_policy_free(p);
    free(csr);
}

static void test_validity_and_usage_from_policy(void **state)
{
    (void)state;
    size_t len;
    uint8_t *csr =
        make_csr(g_rsa2048, "CN=short.example.com", "DNS:short.example.com", false, &len);
    struct cf_ca_issued out;
    struct cf_ca_policy *p = policy("{\"validity\": \"P90D\"}");
    X509 *x = issue_ok(csr, len, p, &out);
    check_validity_exact(x, "P90D");
    assert_int_equal(out.info.not_after_ms - out.info.not_before_ms, 90 * DAY_MS - 1000);
    X509_free(x);
    cf_ca_issued_clear(&out);
    cf_ca_policy_free(p);

    p = policy("{\"validity\": 30, \"keyUsage\": [\"digitalSignature\", \"nonRepudiation\"], "
               "\"extendedKeyUsage\": [\"emailProtection\", \"1.3.6.1.4.1.311.20.2.2\"]}");
    x = issue_ok(csr, len, p, &out);
    check_validity_exact(x, "P30D");
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION);
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    assert_int_equal(sk_ASN1_OBJECT_num(eku), 2);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_email_protect);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 1)), NID_ms_smartcard_login);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    /* Not for TLS servers: openssl says so. */
    char *dir = ca_dir();
    char vout[1024];
    assert_int_not_equal(openssl_verify(dir, out.der, out.der_len, "sslserver", vout, sizeof(vout)),
                         0);
    assert_int_equal(openssl_verify(dir, out.der, out.der_len, "smimesign", vout, sizeof(vout)), 0);
    free(dir);
    X509_free(x);
    cf_ca_issued_clear(&out);
    cf_ca_policy_free(p);

    /* A validity beyond the issuing CA's is cut to it. */
    p = policy("{\"validity\": \"P50Y\"}");
    x = issue_ok(csr, len, p, &out);
    assert_int_equal(
        ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(cf_ca_issuing_cert(g_ca))), 0);
    X509_free(x);
    cf_ca_issued_clear(&out);
    cf_ca_policy_free(p);

    /* timeStamping makes the EKU critical. */
    p = policy("{\"keyUsage\": [\"digitalSignature\"], \"extendedKeyUsage\": [\"timeStamping\"]}");
    x = issue_ok(csr, len, p, &out);
    int idx = X509_get_ext_by_NID(x, NID_ext_key_usage, -1);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
    X509_free(x);
    cf_ca_issued_clear(&out);
    cf_ca_policy_free(p);
    free(csr);
}

static void test_refuses_ca_own_key(void **state)
{
    (void)state;
    /* Reusing a CA key for an end entity is refused; the CSR is made with the issuing CA's key,
     * decrypted here with the openssl command. */
    char *dir = ca_dir();
    char *cmd =
        cf_xasprintf("openssl pkey -in '%s/issuing.key' -passin 'file:%s/passphrase'", dir, dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    EVP_PKEY *k = PEM_read_PrivateKey(p, NULL, NULL, NULL);
    pclose(p);
    assert_non_null(k);
    size_t len;
    uint8_t *csr = make_csr(k, "CN=sneaky", NULL, false, &len);
    char err[512] = "";
    assert_int_equal(issue_status(csr, len, NULL, err, sizeof(err)), CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(err, "one of the CA's own keys"));
    free(csr);
    EVP_PKEY_free(k);
    free(cmd);
    free(dir);
}

static void test_pkcs7_and_pem(void **state)
{
    (void)state;
    size_t len;
    uint8_t *csr = make_csr(g_ec, "CN=p7.example.com", NULL, false, &len);
    struct cf_ca_issued out;
    X509 *x = issue_ok(csr, len, NULL, &out);
    uint8_t *p7 = NULL;
    size_t p7len = 0;
    char err[256] = "";
    assert_int_equal(cf_ca_pkcs7_chain(g_ca, out.der, out.der_len, &p7, &p7len, err, sizeof(err)),
                     0);
    const unsigned char *pp = p7;
    PKCS7 *pk = d2i_PKCS7(NULL, &pp, (long)p7len);
    assert_non_null(pk);
    assert_ptr_equal(pp, p7 + p7len);
    assert_true(PKCS7_type_is_signed(pk));
    STACK_OF(X509) *certs = pk->d.sign->cert;
    assert_int_equal(sk_X509_num(certs), 3);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), x), 0);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 1), cf_ca_issuing_cert(g_ca)), 0);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 2), cf_ca_root_cert(g_ca)), 0);
    assert_int_equal(sk_PKCS7_SIGNER_INFO_num(pk->d.sign->signer_info), 0);
    PKCS7_free(pk);
    /* And what the openssl command makes of it. */
    char *file = path_in(g_dir, "chain.p7b");
    FILE *f = fopen(file, "wb");
    fwrite(p7, 1, p7len, f);
    fclose(f);
    char *cmd = cf_xasprintf("openssl pkcs7 -inform DER -in '%s' -print_certs | grep -c "
                             "'BEGIN CERTIFICATE'",
                             file);
    FILE *pipe = popen(cmd, "r");
    char line[32] = "";
    assert_non_null(fgets(line, sizeof(line), pipe));
    pclose(pipe);
    assert_string_equal(line, "3\n");
    free(cmd);
    free(file);
    free(p7);
    /* Garbage is refused, not bundled. */
    assert_int_equal(
        cf_ca_pkcs7_chain(g_ca, (const uint8_t *)"xx", 2, &p7, &p7len, err, sizeof(err)),
        CF_EPARSE);

    /* PEM text round-trips. */
    char *pem = cf_cert_pem(out.der, out.der_len);
    assert_true(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *y = PEM_read_bio_X509(b, NULL, NULL, NULL);
    assert_non_null(y);
    assert_int_equal(X509_cmp(x, y), 0);
    X509_free(y);
    BIO_free(b);
    free(pem);

    /* Cert info refuses bytes after the certificate. */
    uint8_t *t = cf_xmalloc(out.der_len + 1);
    memcpy(t, out.der, out.der_len);
    t[out.der_len] = 0;
    struct cf_cert_info info;
    assert_int_equal(cf_cert_info_from_der(t, out.der_len + 1, &info, err, sizeof(err)), CF_EPARSE);
    assert_non_null(strstr(err, "trailing data"));
    cf_cert_info_clear(&info);
    free(t);
    X509_free(x);
    cf_ca_issued_clear(&out);
    free(csr);
}

/* ---- idempotency ---------------------------------------------------------------------------- */

struct mem_ledger {
    pthread_mutex_t lock;
    char *keys[16];
    uint8_t *ders[16];
    size_t lens[16];
    size_t n;
    bool blind_find; /* find() always misses, to simulate a race */
    int records;
};

static int ledger_find(void *arg, const char *key, uint8_t **der, size_t *len, char *err,
                       size_t errlen)
{
    (void)err;
    (void)errlen;
    struct mem_ledger *l = arg;
    int rc = CF_ENOENT;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; !l->blind_find && i < l->n; i++) {
        if (strcmp(l->keys[i], key) == 0) {
            *der = cf_xmemdup(l->ders[i], l->lens[i]);
            *len = l->lens[i];
            rc = 0;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static int ledger_record(void *arg, const char *key, const uint8_t *der, size_t len,
                         uint8_t **existing, size_t *existing_len, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct mem_ledger *l = arg;
    int rc = 0;
    pthread_mutex_lock(&l->lock);
    l->records++;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->keys[i], key) == 0) {
            *existing = cf_xmemdup(l->ders[i], l->lens[i]);
            *existing_len = l->lens[i];
            rc = CF_EEXIST;
        }
    }
    if (!rc) {
        l->keys[l->n] = cf_xstrdup(key);
        l->ders[l->n] = cf_xmemdup(der, len);
        l->lens[l->n] = len;
        l->n++;
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static int ledger_broken(void *arg, const char *key, const uint8_t *der, size_t len,
                         uint8_t **existing, size_t *existing_len, char *err, size_t errlen)
{
    (void)arg, (void)key, (void)der, (void)len, (void)existing, (void)existing_len;
    cf_errf(err, errlen, "disk full");
    return CF_EFULL;
}

static void test_idempotency(void **state)
{
    (void)state;
    struct mem_ledger l;
    memset(&l, 0, sizeof(l));
    pthread_mutex_init(&l.lock, NULL);
    struct cf_ca_ledger ledger = {ledger_find, ledger_record, &l};
    size_t len;
    uint8_t *csr = make_csr(g_ec, "CN=once.example.com", NULL, false, &len);
    struct cf_ca_request req = {
        .csr = csr, .csr_len = len, .idempotency_key = "instance-7/activity-3", .ledger = &ledger};
    struct cf_ca_issued first, second;
    char err[512] = "";
    X509 *x = issue_x(&req, CF_CA_OK, &first, err, sizeof(err));
    X509_free(x);
    assert_false(first.replayed);
    assert_int_equal(l.n, 1);
    /* A retry with the same key gets the same certificate, byte for byte. */
    x = issue_x(&req, CF_CA_OK, &second, err, sizeof(err));
    X509_free(x);
    assert_true(second.replayed);
    assert_int_equal(second.der_len, first.der_len);
    assert_memory_equal(second.der, first.der, first.der_len);
    assert_string_equal(second.info.serial, first.info.serial);
    assert_int_equal(l.records, 1);
    cf_ca_issued_clear(&second);
    /* Even when the template has since changed to refuse the request. */
    struct cf_ca_policy *strict = policy("{\"keyTypes\": {\"RSA\": 2048}}");
    req.policy = strict;
    x = issue_x(&req, CF_CA_OK, &second, err, sizeof(err));
    X509_free(x);
    assert_true(second.replayed);
    cf_ca_issued_clear(&second);
    req.policy = NULL;
    cf_ca_policy_free(strict);

    /* The same key for another public key is a mistake of the caller. */
    size_t len2;
    uint8_t *other = make_csr(g_ec2, "CN=once.example.com", NULL, false, &len2);
    req.csr = other;
    req.csr_len = len2;
    issue_x(&req, CF_CA_COMMON_ERROR, &second, err, sizeof(err));
    assert_non_null(strstr(err, "already used for a certificate of another public key"));

    /* Two calls race: both miss in find(); the second to record gets the first's certificate. */
    l.blind_find = true;
    req.csr = csr;
    req.csr_len = len;
    x = issue_x(&req, CF_CA_OK, &second, err, sizeof(err));
    X509_free(x);
    assert_true(second.replayed);
    assert_memory_equal(second.der, first.der, first.der_len);
    assert_int_equal(l.n, 1);
    cf_ca_issued_clear(&second);

    /* A certificate that cannot be recorded is not handed out. */
    struct cf_ca_ledger broken = {ledger_find, ledger_broken, &l};
    req.ledger = &broken;
    req.idempotency_key = "another-key";
    issue_x(&req, CF_CA_CONNECTION_FAILED, &second, err, sizeof(err));
    assert_non_null(strstr(err, "disk full"));
    assert_string_equal(cf_ca_status_code(CF_CA_CONNECTION_FAILED), "CaConnectionFailed");

    cf_ca_issued_clear(&first);
    for (size_t i = 0; i < l.n; i++) {
        free(l.keys[i]);
        free(l.ders[i]);
    }
    pthread_mutex_destroy(&l.lock);
    free(other);
    free(csr);
}

/* ---- threads -------------------------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 25

struct worker {
    const struct cf_ca_policy *policy;
    uint8_t *csr;
    size_t len;
    char serials[PER_THREAD][64];
    int failures;
    char err[512];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        struct cf_ca_request req = {.csr = w->csr, .csr_len = w->len, .policy = w->policy};
        struct cf_ca_issued out;
        if (cf_ca_issue(g_ca, &req, &out, w->err, sizeof(w->err)) != CF_CA_OK) {
            w->failures++;
            continue;
        }
        const unsigned char *p = out.der;
        X509 *x = d2i_X509(NULL, &p, (long)out.der_len);
        if (!x || verify_in_process(g_ca, x, X509_PURPOSE_SSL_SERVER) != 0)
            w->failures++;
        X509_free(x);
        cf_strlcpy(w->serials[i], out.info.serial, sizeof(w->serials[i]));
        cf_ca_issued_clear(&out);
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_concurrent_issuance(void **state)
{
    (void)state;
    struct cf_ca_policy *pol = policy("{\"validity\": \"P30D\"}");
    struct worker *w = cf_xcalloc(THREADS, sizeof(*w));
    pthread_t th[THREADS];
    EVP_PKEY *keys[THREADS] = {g_ec, g_ec2, g_rsa2048, g_ec};
    for (int i = 0; i < THREADS; i++) {
        char cn[64];
        snprintf(cn, sizeof(cn), "CN=thread-%d.example.com", i);
        w[i].policy = (i % 2) ? pol : NULL;
        w[i].csr = make_csr(keys[i], cn, "DNS:thread.example.com", i == 3, &w[i].len);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    char(*all)[64] = cf_xcalloc(THREADS * PER_THREAD, 64);
    for (int i = 0; i < THREADS; i++) {
        if (w[i].failures)
            fail_msg("thread %d: %d failures, last: %s", i, w[i].failures, w[i].err);
        for (int k = 0; k < PER_THREAD; k++)
            memcpy(all[i * PER_THREAD + k], w[i].serials[k], 64);
        free(w[i].csr);
    }
    qsort(all, THREADS * PER_THREAD, 64, cmp_str);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        assert_string_not_equal(all[i - 1], all[i]);
    free(all);
    free(w);
    cf_ca_policy_free(pol);
}

/* ---- CSR decoding --------------------------------------------------------------------------- */

/* Our decoder and OpenSSL's d2i_X509_REQ() agree on subject and key, for every key type. */
static void test_csr_decode_matches_openssl(void **state)
{
    (void)state;
    EVP_PKEY *keys[] = {g_ec, g_p521, g_rsa2048, g_rsa1024, g_ed25519};
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        size_t len;
        uint8_t *der =
            make_csr(keys[i], "CN=decode/O=Test/OU=Unit", "DNS:a.example,IP:10.1.2.3", false, &len);
        struct cf_csr *csr = NULL;
        char err[256] = "";
        if (cf_csr_decode(der, len, &csr, err, sizeof(err)))
            fail_msg("key %zu: %s", i, err);
        const unsigned char *p = der;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
        assert_non_null(req);
        assert_int_equal(X509_NAME_cmp(cf_csr_subject(csr), X509_REQ_get_subject_name(req)), 0);
        assert_int_equal(EVP_PKEY_eq(cf_csr_pubkey(csr), X509_REQ_get0_pubkey(req)), 1);
        assert_int_equal(EVP_PKEY_eq(cf_csr_pubkey(csr), keys[i]), 1);
        assert_int_equal(cf_csr_verify(csr, err, sizeof(err)), 0);
        assert_int_equal(sk_GENERAL_NAME_num(cf_csr_sans(csr)), 2);
        size_t dlen;
        const uint8_t *d = cf_csr_der(csr, &dlen);
        assert_int_equal(dlen, len);
        assert_memory_equal(d, der, len);
        X509_REQ_free(req);
        cf_csr_free(csr);
        free(der);
    }
}

/* Every single-byte change of a CSR: no crash, nothing OpenSSL would refuse is accepted, and
 * whatever decodes and verifies must still be issued or refused cleanly. */
static void test_csr_mutations(void **state)
{
    (void)state;
    size_t len;
    uint8_t *der = make_csr(g_ec, "CN=m", "DNS:m.example.com", false, &len);
    uint8_t *t = cf_xmalloc(len);
    for (size_t i = 0; i < len; i++) {
        for (int flip = 0; flip < 2; flip++) {
            memcpy(t, der, len);
            t[i] ^= flip ? 0x80 : 0x01;
            struct cf_csr *csr = NULL;
            int rc = cf_csr_decode(t, len, &csr, NULL, 0);
            const unsigned char *p = t;
            X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
            bool openssl_ok = req && p == t + len;
            ERR_clear_error();
            if (rc == 0 && !openssl_ok)
                fail_msg("byte %zu ^ %d: accepted by cf_csr_decode, refused by OpenSSL", i,
                         flip ? 0x80 : 0x01);
            X509_REQ_free(req);
            cf_csr_free(csr);
            char err[512];
            enum cf_ca_status st = issue_status(t, len, NULL, err, sizeof(err));
            assert_true(st == CF_CA_OK || st == CF_CA_COMMON_ERROR || st == CF_CA_REQUEST_FAILED);
        }
    }
    free(t);
    free(der);
}

/* ---- policy parsing ------------------------------------------------------------------------- */

static void test_policy_defaults_and_round_trip(void **state)
{
    (void)state;
    struct cf_ca_policy *p = policy("{}");
    char *json = cf_ca_policy_to_json(p);
    assert_string_equal(
        json, "{\"validity\":\"P1Y\",\"keyTypes\":{\"RSA\":2048,\"EC\":[\"P-256\",\"P-384\"],"
              "\"Ed25519\":false,\"Ed448\":false},\"keyUsage\":[\"digitalSignature\","
              "\"keyEncipherment\"],\"extendedKeyUsage\":[\"serverAuth\",\"clientAuth\"],"
              "\"subject\":{\"required\":[\"CN\"],\"allowed\":[\"C\",\"ST\",\"L\",\"O\",\"OU\"],"
              "\"source\":\"any\"},\"san\":{\"types\":[\"dns\",\"ip\",\"email\",\"uri\"],"
              "\"max\":20,\"domains\":[],\"wildcards\":false,\"required\":false,\"source\":"
              "\"any\"}}");
    assert_null(cf_ca_policy_publication(p));
    assert_int_equal(cf_ca_policy_validity(p)->years, 1);
    assert_int_equal(cf_ca_policy_subject_source(p), CF_CA_SOURCE_ANY);
    free(json);
    cf_ca_policy_free(p);

    const char *full =
        "{\"validity\":45,\"keyTypes\":{\"RSA\":3072,\"EC\":[\"P-384\"],\"Ed25519\":true,"
        "\"Ed448\":false},\"keyUsage\":[\"digitalSignature\",\"keyAgreement\"],"
        "\"extendedKeyUsage\":[\"clientAuth\",\"1.2.3.4.5\"],\"subject\":{\"required\":[\"CN\","
        "\"O\"],\"allowed\":[\"serialNumber\"],\"source\":\"override\"},\"san\":{\"types\":"
        "[\"dns\"],\"max\":2,\"domains\":[\"example.com\",\"corp.example.org\"],\"wildcards\":"
        "true,\"required\":true,\"source\":\"csr\"},\"publication\":\"LDAP publish\"}";
    p = policy(full);
    json = cf_ca_policy_to_json(p);
    assert_string_equal(json, full);
    assert_string_equal(cf_ca_policy_publication(p), "LDAP publish");
    assert_int_equal(cf_ca_policy_subject_source(p), CF_CA_SOURCE_OVERRIDE);
    assert_int_equal(cf_ca_policy_san_source(p), CF_CA_SOURCE_CSR);
    assert_int_equal(cf_ca_policy_validity(p)->days, 45);
    struct cf_ca_policy *q = policy(json);
    char *again = cf_ca_policy_to_json(q);
    assert_string_equal(again, json);
    free(again);
    cf_ca_policy_free(q);
    free(json);
    /* Every key type the template allows has its key usage extension ready. */
    assert_non_null(cf_ca_policy_key_usage_ext(p, g_rsa2048));
    assert_non_null(cf_ca_policy_key_usage_ext(p, g_ec));
    assert_non_null(cf_ca_policy_key_usage_ext(p, g_ed25519));
    assert_non_null(cf_ca_policy_ext_key_usage_ext(p));
    cf_ca_policy_free(p);
    assert_int_equal(cf_ca_policy_attr_nid("CN"), NID_commonName);
    assert_int_equal(cf_ca_policy_attr_nid("commonName"), NID_undef);
}

static void test_policy_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        {"[]", "procedure: expected a JSON object, got an array"},
        {"{", "procedure: invalid JSON at line 1"},
        {"{\"validity\": \"P1Y\", \"validity\": \"P2Y\"}", "duplicate object key"},
        {"{\"foo\": 1}", "procedure: unknown field \"foo\"; expected validity, keyTypes"},
        {"{\"validity\": \"P1X\"}", "procedure.validity: invalid duration 'P1X'"},
        {"{\"validity\": 0}", "procedure.validity: 0 days: the validity must be at least 1 day"},
        {"{\"validity\": 1.5}", "procedure.validity: expected an ISO-8601 duration such as "
                                "\"P1Y\" or a number of days, got a number with a fraction"},
        {"{\"validity\": \"PT30S\"}", "procedure.validity: \"PT30S\" is shorter than one minute"},
        {"{\"keyTypes\": [\"RSA\"]}", "procedure.keyTypes: expected an object"},
        {"{\"keyTypes\": {\"RSA\": 1024}}",
         "procedure.keyTypes.RSA: 1024 bits is below 2048, the smallest RSA key certflow issues "
         "for"},
        {"{\"keyTypes\": {\"RSA\": 32768}}", "procedure.keyTypes.RSA: 32768 bits is above 16384"},
        {"{\"keyTypes\": {\"RSA\": \"2048\"}}",
         "procedure.keyTypes.RSA: expected a number of bits or false, got a string"},
        {"{\"keyTypes\": {\"EC\": [\"P-256\", \"P-192\"]}}",
         "procedure.keyTypes.EC[1]: unknown curve \"P-192\"; expected P-256, P-384 or P-521"},
        {"{\"keyTypes\": {\"EC\": \"P-256\"}}",
         "procedure.keyTypes.EC: expected an array of curve names or false, got a string"},
        {"{\"keyTypes\": {\"DSA\": 2048}}",
         "procedure.keyTypes: unknown key type \"DSA\"; expected RSA, EC, Ed25519 or Ed448"},
        {"{\"keyTypes\": {\"Ed25519\": \"yes\"}}",
         "procedure.keyTypes.Ed25519: expected true or false, got a string"},
        {"{\"keyTypes\": {\"RSA\": false, \"EC\": []}}",
         "procedure.keyTypes: allows no key type at all"},
        {"{\"keyUsage\": []}", "procedure.keyUsage: must name at least one key usage"},
        {"{\"keyUsage\": [\"digitalSignature\", \"keyCertSign\"]}",
         "procedure.keyUsage[1]: keyCertSign is for CA certificates; templates issue end-entity "
         "certificates"},
        {"{\"keyUsage\": [\"signing\"]}", "procedure.keyUsage[0]: unknown key usage \"signing\""},
        {"{\"keyUsage\": [\"digitalSignature\", \"digitalSignature\"]}",
         "procedure.keyUsage[1]: digitalSignature appears twice"},
        {"{\"keyUsage\": [\"keyEncipherment\"]}",
         "procedure.keyUsage: none of keyEncipherment applies to EC keys, which keyTypes "
         "allows"},
        {"{\"keyUsage\": [\"digitalSignature\", \"encipherOnly\"]}",
         "procedure.keyUsage: encipherOnly and decipherOnly need keyAgreement"},
        {"{\"extendedKeyUsage\": [\"webAuth\"]}",
         "procedure.extendedKeyUsage[0]: unknown extended key usage \"webAuth\""},
        {"{\"extendedKeyUsage\": [\"serverAuth\", 7]}",
         "procedure.extendedKeyUsage[1]: expected a name or a dotted OID, got an integer"},
        {"{\"extendedKeyUsage\": [\"timeStamping\", \"serverAuth\"]}",
         "procedure.extendedKeyUsage: timeStamping must be the only extended key usage"},
        {"{\"subject\": {\"required\": [\"CommonName\"]}}",
         "procedure.subject.required[0]: unknown subject attribute \"CommonName\"; expected one "
         "of CN, C, ST"},
        {"{\"subject\": {\"allowed\": \"O\"}}", "procedure.subject.allowed: expected an array"},
        {"{\"subject\": {\"source\": \"request\"}}",
         "procedure.subject.source: unknown source \"request\"; expected \"csr\", \"override\" "
         "or \"any\""},
        {"{\"subject\": {\"optional\": []}}",
         "procedure.subject: unknown field \"optional\"; expected required, allowed or source"},
        {"{\"san\": {\"types\": [\"dns\", \"x400\"]}}",
         "procedure.san.types[1]: expected \"dns\", \"ip\", \"email\" or \"uri\", got x400"},
        {"{\"san\": {\"max\": -1}}", "procedure.san.max: expected an integer from 0 to 1000"},
        {"{\"san\": {\"domains\": [\".example.com\"]}}",
         "procedure.san.domains[0]: \".example.com\" is not a domain name: it has an empty "
         "label (write example.com"},
        {"{\"san\": {\"domains\": [\"exa mple.com\"]}}",
         "procedure.san.domains[0]: \"exa mple.com\" is not a domain name: it has a character"},
        {"{\"san\": {\"wildcards\": 1}}", "procedure.san.wildcards: expected true or false"},
        {"{\"san\": {\"required\": true, \"types\": []}}",
         "procedure.san.required: the template requires a SAN but allows none"},
        {"{\"san\": {\"count\": 3}}", "procedure.san: unknown field \"count\""},
        {"{\"publication\": 5}",
         "procedure.publication: expected the name of a publication procedure, got an integer"},
        {"{\"publication\": \"\"}", "procedure.publication: expected the name of a publication "
                                    "procedure, got an empty string"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        struct cf_ca_policy *p = NULL;
        char err[512] = "";
        int rc = cf_ca_policy_parse(cases[i].json, &p, err, sizeof(err));
        if (rc != CF_EPARSE)
            fail_msg("%s: got %s, want CF_EPARSE", cases[i].json, cf_err_name(rc));
        assert_null(p);
        if (!strstr(err, cases[i].msg))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].json, err, cases[i].msg);
    }
    struct cf_ca_policy *p = NULL;
    assert_int_equal(cf_ca_policy_parse(NULL, &p, NULL, 0), CF_EINVAL);
}

static void test_policy_checks(void **state)
{
    (void)state;
    char err[512] = "";
    struct cf_ca_policy *p = policy("{\"keyTypes\": {\"RSA\": 3072, \"EC\": [\"P-521\"]}}");
    assert_int_equal(cf_ca_policy_check_key(p, g_rsa2048, err, sizeof(err)), CF_EPERM);
    assert_string_equal(err, "RSA key of 2048 bits is below the template's minimum of 3072");
    assert_int_equal(cf_ca_policy_check_key(p, g_p521, err, sizeof(err)), 0);
    assert_int_equal(cf_ca_policy_check_key(p, g_ec, err, sizeof(err)), CF_EPERM);
    assert_string_equal(err, "EC key on curve P-256 is not allowed by the template (it allows RSA "
                             "of at least 3072 bits, EC on P-521)");
    cf_ca_policy_free(p);
    /* The key usage extension follows the key's algorithm. */
    p = policy("{\"keyUsage\": [\"digitalSignature\", \"keyEncipherment\", \"keyAgreement\"]}");
    X509_EXTENSION *ext = (X509_EXTENSION *)cf_ca_policy_key_usage_ext(p, g_rsa2048);
    ASN1_BIT_STRING *ku = X509V3_EXT_d2i(ext);
    assert_int_equal(ASN1_BIT_STRING_get_bit(ku, 0), 1);
    assert_int_equal(ASN1_BIT_STRING_get_bit(ku, 2), 1);
    assert_int_equal(ASN1_BIT_STRING_get_bit(ku, 4), 0);
    ASN1_BIT_STRING_free(ku);
    ext = (X509_EXTENSION *)cf_ca_policy_key_usage_ext(p, g_ec);
    ku = X509V3_EXT_d2i(ext);
    assert_int_equal(ASN1_BIT_STRING_get_bit(ku, 0), 1);
    assert_int_equal(ASN1_BIT_STRING_get_bit(ku, 2), 0);
    assert_int_equal(ASN1_BIT_STRING_get_bit(ku, 4), 1);
    ASN1_BIT_STRING_free(ku);
    assert_null(cf_ca_policy_key_usage_ext(p, g_ed25519));
    cf_ca_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_files),
        cmocka_unit_test(test_init_refuses_existing),
        cmocka_unit_test(test_init_force_and_open_errors),
        cmocka_unit_test(test_rsa_ca_external_passphrase),
        cmocka_unit_test(test_issue_ec_p256),
        cmocka_unit_test(test_issue_rsa2048),
        cmocka_unit_test(test_serials_differ),
        cmocka_unit_test(test_rsa1024_refused),
        cmocka_unit_test(test_ed25519_allowed),
        cmocka_unit_test(test_unusual_csrs),
        cmocka_unit_test(test_bad_csrs_are_common_errors),
        cmocka_unit_test(test_pem_forms),
        cmocka_unit_test(test_san_policy),
        cmocka_unit_test(test_subject_policy),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_validity_and_usage_from_policy),
        cmocka_unit_test(test_refuses_ca_own_key),
        cmocka_unit_test(test_pkcs7_and_pem),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_concurrent_issuance),
        cmocka_unit_test(test_csr_decode_matches_openssl),
        cmocka_unit_test(test_csr_mutations),
        cmocka_unit_test(test_policy_defaults_and_round_trip),
        cmocka_unit_test(test_policy_errors),
        cmocka_unit_test(test_policy_checks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
