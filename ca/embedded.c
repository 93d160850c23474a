/*
 * The embedded CA (see ca/embedded.h): creating a root and an issuing CA in a directory, loading
 * them, and issuing end-entity certificates from PKCS#10 requests under a template.
 *
 * Issuing is built for many calls per second from several threads. Everything that is the same
 * for every certificate is prepared once by cf_ca_open() and only read afterwards: the decrypted
 * issuing key, the issuer name with its encoding cached, the authority key identifier and basic
 * constraints extensions, the digest, the chain. The template prepares its key usage and extended
 * key usage the same way (ca/policy.c). Per certificate, the CSR's SubjectPublicKeyInfo is copied
 * into the certificate as bytes: X509_set_pubkey() would re-encode the key through OpenSSL 3.0's
 * encoder, which costs more than signing.
 *
 * Storage of issued certificates, the connector interface and the loop are the callers'.
 */
#include "ca/embedded.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "base/iso8601.h"

#define ROOT_CERT "root.pem"
#define ROOT_KEY "root.key"
#define ISSUING_CERT "issuing.pem"
#define ISSUING_KEY "issuing.key"
#define PASSPHRASE "passphrase"

/* PBKDF2 iterations: OWASP's 2023 figure for PBKDF2-HMAC-SHA256 for a passphrase a person chose,
 * OpenSSL's default for the generated 256-bit one, which no iteration count makes stronger. */
#define KDF_ITER_CHOSEN 600000
#define KDF_ITER_GENERATED 2048

#define PASS_MAX 1024
#define CA_FILE_MAX (1024 * 1024)

struct cf_ca {
    X509 *root;
    X509 *issuing;
    EVP_PKEY *key;
    const EVP_MD *md;
    X509_NAME *issuer_name;
    X509_EXTENSION *aki_ext;
    X509_EXTENSION *bc_ext;
    uint64_t not_before_ms; /* of the issuing CA */
    uint64_t not_after_ms;
    char *chain_pem;
    uint8_t *issuing_der;
    size_t issuing_der_len;
    uint8_t *root_der;
    size_t root_der_len;
    struct cf_ca_policy *default_policy;
};

/* A passphrase in memory; always wiped with OPENSSL_cleanse() by its owner. */
struct pass {
    char s[PASS_MAX];
    size_t len;
};

static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown OpenSSL error";
}

static char *path_of(const char *dir, const char *name)
{
    return cf_xasprintf("%s/%s", dir, name);
}

/* ---- files ---------------------------------------------------------------------------------- */

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/*
 * Writes `name` in `dir` through a temporary file, fsync and rename, with `mode`. Without
 * `replace` the file is published with link(), which fails rather than replace a file that
 * appeared meanwhile.
 */
static int write_atomic(const char *dir, const char *name, const void *data, size_t len,
                        mode_t mode, bool replace, char *err, size_t errlen)
{
    char *final = path_of(dir, name);
    char *tmp = cf_xasprintf("%s/.%s.XXXXXX", dir, name);
    int rc = 0;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        cf_errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        rc = errno == ENOSPC ? CF_EFULL : CF_EIO;
        goto out;
    }
    const char *p = data;
    size_t left = len;
    bool ok = fchmod(fd, mode) == 0;
    while (ok && left) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        if (ok) {
            p += n;
            left -= (size_t)n;
        }
    }
    ok = ok && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        cf_errf(err, errlen, "%s: cannot write: %s", tmp, strerror(saved));
        rc = saved == ENOSPC ? CF_EFULL : CF_EIO;
        unlink(tmp);
        goto out;
    }
    struct stat st;
    if (!replace && link(tmp, final) == 0) {
        unlink(tmp);
    } else if (!replace && (errno == EEXIST || lstat(final, &st) == 0)) {
        /* A file system without hard links falls through to rename() after the lstat() check,
         * which leaves only a narrow race with another init of the same directory. */
        unlink(tmp);
        cf_errf(err, errlen, "%s appeared while the CA was being created", final);
        rc = CF_EEXIST;
        goto out;
    } else if (rename(tmp, final) != 0) {
        cf_errf(err, errlen, "%s: cannot rename into place: %s", final, strerror(errno));
        unlink(tmp);
        rc = CF_EIO;
        goto out;
    }
    if (fsync_dir(dir) != 0) {
        cf_errf(err, errlen, "%s: cannot sync the directory: %s", dir, strerror(errno));
        rc = CF_EIO;
    }
out:
    free(final);
    free(tmp);
    return rc;
}

/* ---- the passphrase ------------------------------------------------------------------------- */

/* Reads a secret file into `pw` without leaving copies of it in freed heap memory. */
static int pass_from_file(const char *path, struct pass *pw, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cf_errf(err, errlen, "passphrase file %s: cannot open: %s", path, strerror(errno));
        return errno == ENOENT ? CF_ENOENT : CF_EIO;
    }
    pw->len = 0;
    for (;;) {
        ssize_t n = read(fd, pw->s + pw->len, sizeof(pw->s) - 1 - pw->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cf_errf(err, errlen, "passphrase file %s: cannot read: %s", path, strerror(errno));
            close(fd);
            return CF_EIO;
        }
        if (n == 0)
            break;
        pw->len += (size_t)n;
        if (pw->len == sizeof(pw->s) - 1) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                cf_errf(err, errlen, "passphrase file %s is longer than %d bytes", path,
                        PASS_MAX - 1);
                close(fd);
                return CF_ELIMIT;
            }
            break;
        }
    }
    close(fd);
    /* echo and most editors end the file with a newline that is not part of the secret. */
    if (pw->len && pw->s[pw->len - 1] == '\n')
        pw->len--;
    if (pw->len && pw->s[pw->len - 1] == '\r')
        pw->len--;
    if (!pw->len) {
        cf_errf(err, errlen, "passphrase file %s is empty", path);
        return CF_EINVAL;
    }
    return 0;
}

static int pass_from_env(const char *name, struct pass *pw, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        cf_errf(err, errlen, "environment variable %s is not set", name);
        return CF_ENOENT;
    }
    size_t n = strlen(v);
    if (n >= sizeof(pw->s)) {
        cf_errf(err, errlen, "environment variable %s is longer than %d bytes", name, PASS_MAX - 1);
        return CF_ELIMIT;
    }
    memcpy(pw->s, v, n);
    pw->len = n;
    return 0;
}

/* The passphrase of `secret`; *chosen tells whether a person chose it (file or env). With no
 * source given, the directory's file. */
static int pass_load(const char *dir, const struct cf_ca_secret *secret, struct pass *pw,
                     bool *chosen, char *err, size_t errlen)
{
    *chosen = true;
    if (secret && secret->file)
        return pass_from_file(secret->file, pw, err, errlen);
    if (secret && secret->env)
        return pass_from_env(secret->env, pw, err, errlen);
    *chosen = false;
    char *path = path_of(dir, PASSPHRASE);
    int rc = pass_from_file(path, pw, err, errlen);
    free(path);
    return rc;
}

/* 256 random bits as 43 characters of Base64 without padding: text, so that an operator can
 * copy it into a credential store. */
static int pass_generate(struct pass *pw, char *err, size_t errlen)
{
    unsigned char raw[32];
    unsigned char b64[48];
    if (RAND_priv_bytes(raw, sizeof(raw)) != 1) {
        cf_errf(err, errlen, "cannot generate a passphrase: %s", ossl_reason());
        return CF_EIO;
    }
    int n = EVP_EncodeBlock(b64, raw, sizeof(raw));
    while (n > 0 && b64[n - 1] == '=')
        n--;
    memcpy(pw->s, b64, (size_t)n);
    pw->len = (size_t)n;
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b64, sizeof(b64));
    return 0;
}

/* ---- keys ----------------------------------------------------------------------------------- */

/* The private key as PKCS#8 "ENCRYPTED PRIVATE KEY" PEM (PBES2, PBKDF2-HMAC-SHA256,
 * AES-256-CBC) in `out`; the plaintext key exists only inside OpenSSL, which wipes it. */
static int key_encrypt(EVP_PKEY *pkey, const struct pass *pw, int iter, struct cf_buf *out,
                       char *err, size_t errlen)
{
    PKCS8_PRIV_KEY_INFO *p8inf = EVP_PKEY2PKCS8(pkey);
    X509_ALGOR *pbe = PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), iter, NULL, 0, NULL, NID_hmacWithSHA256);
    X509_SIG *p8 = p8inf && pbe ? PKCS8_set0_pbe(pw->s, (int)pw->len, p8inf, pbe) : NULL;
    BIO *b = p8 ? BIO_new(BIO_s_mem()) : NULL;
    int rc = 0;
    if (!b || !PEM_write_bio_PKCS8(b, p8)) {
        cf_errf(err, errlen, "cannot encrypt a CA key: %s", ossl_reason());
        rc = CF_EIO;
    } else {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        cf_buf_append(out, data, (size_t)n);
    }
    if (!p8)
        X509_ALGOR_free(pbe);
    X509_SIG_free(p8);
    PKCS8_PRIV_KEY_INFO_free(p8inf);
    BIO_free(b);
    return rc;
}

static int key_decrypt(const char *path, const struct pass *pw, EVP_PKEY **out, char *err,
                       size_t errlen)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cf_read_file(path, CA_FILE_MAX, &data, &len, err, errlen);
    if (rc)
        return rc;
    BIO *b = BIO_new_mem_buf(data, (int)len);
    X509_SIG *p8 = b ? PEM_read_bio_PKCS8(b, NULL, NULL, NULL) : NULL;
    PKCS8_PRIV_KEY_INFO *inf = NULL;
    if (!p8) {
        cf_errf(err, errlen, "%s is not an encrypted PKCS#8 PEM key (ENCRYPTED PRIVATE KEY)", path);
        rc = CF_EPARSE;
    } else if (!(inf = PKCS8_decrypt(p8, pw->s, (int)pw->len))) {
        /* A wrong passphrase gives bad CBC padding, or (1 in 256) garbage that does not parse. */
        cf_errf(err, errlen, "cannot decrypt %s: wrong passphrase", path);
        rc = CF_EAUTH;
    } else if (!(*out = EVP_PKCS82PKEY(inf))) {
        cf_errf(err, errlen, "%s holds no usable private key: %s", path, ossl_reason());
        rc = CF_EPARSE;
    }
    PKCS8_PRIV_KEY_INFO_free(inf);
    X509_SIG_free(p8);
    BIO_free(b);
    free(data);
    return rc;
}

/* The digest an issuer signs with: SHA-384 with a P-384 key (matched strength, RFC 5480 §4),
 * SHA-512 with P-521, SHA-256 otherwise. */
static const EVP_MD *md_for(EVP_PKEY *key)
{
    char group[64];
    size_t n = 0;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC &&
        EVP_PKEY_get_group_name(key, group, sizeof(group), &n) == 1) {
        if (strcmp(group, "secp384r1") == 0)
            return EVP_sha384();
        if (strcmp(group, "secp521r1") == 0)
            return EVP_sha512();
    }
    return EVP_sha256();
}

/* ---- building certificates ------------------------------------------------------------------ */

/* RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
static ASN1_OCTET_STRING *key_id(const unsigned char *bits, int len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *os = NULL;
    if (EVP_Digest(bits, (size_t)len, md, &mdlen, EVP_sha1(), NULL) == 1 &&
        (os = ASN1_OCTET_STRING_new()) && !ASN1_OCTET_STRING_set(os, md, (int)mdlen)) {
        ASN1_OCTET_STRING_free(os);
        os = NULL;
    }
    return os;
}

static X509_EXTENSION *aki_extension(const ASN1_OCTET_STRING *keyid)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    X509_EXTENSION *ext = NULL;
    if (akid && (akid->keyid = ASN1_OCTET_STRING_dup(keyid)))
        ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
    AUTHORITY_KEYID_free(akid);
    return ext;
}

/* basicConstraints, critical: CA:FALSE, or CA:TRUE with a path length limit of `pathlen`, or
 * without a limit when `pathlen` is negative. */
static X509_EXTENSION *bc_extension(bool ca, int pathlen)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    X509_EXTENSION *ext = NULL;
    if (!bc)
        return NULL;
    bc->ca = ca ? 0xff : 0;
    if (ca && pathlen >= 0) {
        bc->pathlen = ASN1_INTEGER_new();
        if (!bc->pathlen || !ASN1_INTEGER_set(bc->pathlen, pathlen))
            goto out;
    }
    ext = X509V3_EXT_i2d(NID_basic_constraints, 1, bc);
out:
    BASIC_CONSTRAINTS_free(bc);
    return ext;
}

static bool add_ext(X509 *x, X509_EXTENSION *ext)
{
    bool ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A random positive serial of 16 bytes with the top bit cleared: 127 bits from the DRBG, well
 * above the 64 bits CA/Browser Forum rules ask for, and never 0. */
static bool set_serial(X509 *x)
{
    unsigned char rnd[16];
    bool zero;
    do {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            return false;
        rnd[0] &= 0x7f;
        zero = true;
        for (size_t i = 0; i < sizeof(rnd); i++)
            zero = zero && rnd[i] == 0;
    } while (zero);
    BIGNUM *bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

static bool set_validity(X509 *x, uint64_t not_before_ms, uint64_t not_after_ms)
{
    return ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(not_before_ms / 1000)) &&
           ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(not_after_ms / 1000));
}

static X509_NAME *ca_name(const char *org, const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    if (n && org && *org &&
        !X509_NAME_add_entry_by_NID(n, NID_organizationName, MBSTRING_UTF8,
                                    (const unsigned char *)org, -1, -1, 0)) {
        X509_NAME_free(n);
        return NULL;
    }
    if (n && !X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
                                         (const unsigned char *)cn, -1, -1, 0)) {
        X509_NAME_free(n);
        return NULL;
    }
    return n;
}

/* notAfter = notBefore + duration - 1 s, cut to `limit_ms` (0: no limit). */
static int end_of(const struct cf_iso_duration *d, uint64_t not_before_ms, uint64_t limit_ms,
                  uint64_t *out)
{
    int64_t end;
    if (cf_iso_duration_add(d, (int64_t)not_before_ms, &end, NULL, 0))
        end = CF_ISO_MAX_MS;
    uint64_t na = (uint64_t)end - 1000;
    if (limit_ms && na > limit_ms)
        na = limit_ms;
    if (na < not_before_ms)
        return CF_EINVAL;
    *out = na - na % 1000;
    return 0;
}

/* A CA certificate for `key`, signed by `signer` (itself for the root). */
static X509 *make_ca_cert(EVP_PKEY *key, const X509_NAME *subject, EVP_PKEY *signer,
                          X509 *issuer_cert, int pathlen, uint64_t nb, uint64_t na)
{
    X509 *x = X509_new();
    ASN1_OCTET_STRING *skid = NULL;
    bool ok = x && X509_set_version(x, X509_VERSION_3) && set_serial(x) &&
              X509_set_subject_name(x, subject) &&
              X509_set_issuer_name(x, issuer_cert ? X509_get_subject_name(issuer_cert) : subject) &&
              set_validity(x, nb, na) && X509_set_pubkey(x, key);
    if (ok) {
        const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(x);
        skid = key_id(ASN1_STRING_get0_data(bits), ASN1_STRING_length(bits));
        const ASN1_OCTET_STRING *akid = issuer_cert ? X509_get0_subject_key_id(issuer_cert) : skid;
        ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
        ok = skid && akid && ku && ASN1_BIT_STRING_set_bit(ku, 5, 1) &&
             ASN1_BIT_STRING_set_bit(ku, 6, 1) && add_ext(x, bc_extension(true, pathlen)) &&
             add_ext(x, X509V3_EXT_i2d(NID_key_usage, 1, ku)) &&
             add_ext(x, X509V3_EXT_i2d(NID_subject_key_identifier, 0, skid)) &&
             add_ext(x, aki_extension(akid)) && X509_sign(x, signer, md_for(signer)) > 0;
        ASN1_BIT_STRING_free(ku);
    }
    ASN1_OCTET_STRING_free(skid);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static char *cert_pem_text(const X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    char *pem = n > 0 ? cf_cert_pem(der, (size_t)n) : NULL;
    OPENSSL_free(der);
    return pem;
}

/* ---- cf_ca_init ----------------------------------------------------------------------------- */

static const char *const ca_files[] = {ROOT_CERT, ROOT_KEY, ISSUING_CERT, ISSUING_KEY};

static int prepare_dir(const char *dir, bool force, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        cf_errf(err, errlen, "%s: cannot create the CA directory: %s", dir, strerror(errno));
        return CF_EIO;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cf_errf(err, errlen, "%s is not a directory", dir);
        return CF_EINVAL;
    }
    for (size_t i = 0; !force && i < CF_ARRAY_LEN(ca_files); i++) {
        char *p = path_of(dir, ca_files[i]);
        bool exists = lstat(p, &st) == 0;
        if (exists)
            cf_errf(err, errlen,
                    "%s exists: %s already holds a CA; replacing it needs force (and makes "
                    "every certificate it issued unverifiable with the new chain)",
                    p, dir);
        free(p);
        if (exists)
            return CF_EEXIST;
    }
    return 0;
}

static EVP_PKEY *generate_key(enum cf_ca_key_alg alg)
{
    switch (alg) {
    case CF_CA_KEY_EC_P384:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    case CF_CA_KEY_RSA_3072:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    case CF_CA_KEY_EC_P256:
    default:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    }
}

static int parse_validity(const char *what, const char *text, struct cf_iso_duration *d, char *err,
                          size_t errlen)
{
    char e[256];
    if (cf_iso_parse_duration(text, d, e, sizeof(e)) || cf_iso_duration_is_zero(d)) {
        cf_errf(err, errlen, "%s: %s", what, cf_iso_duration_is_zero(d) ? "must not be zero" : e);
        return CF_EINVAL;
    }
    return 0;
}

int cf_ca_init(const char *dir, const struct cf_ca_init_opts *opts, char *err, size_t errlen)
{
    static const struct cf_ca_init_opts defaults;
    if (!opts)
        opts = &defaults;
    if (!dir || !*dir) {
        cf_errf(err, errlen, "no CA directory given");
        return CF_EINVAL;
    }
    const char *root_cn = opts->root_cn && *opts->root_cn ? opts->root_cn : "certflow Root CA";
    const char *issuing_cn =
        opts->issuing_cn && *opts->issuing_cn ? opts->issuing_cn : "certflow Issuing CA";
    if (opts->key_alg != CF_CA_KEY_EC_P256 && opts->key_alg != CF_CA_KEY_EC_P384 &&
        opts->key_alg != CF_CA_KEY_RSA_3072) {
        cf_errf(err, errlen, "key_alg: unknown key algorithm %d", (int)opts->key_alg);
        return CF_EINVAL;
    }
    struct cf_iso_duration root_d, issuing_d;
    int rc = parse_validity("root_validity", opts->root_validity ? opts->root_validity : "P20Y",
                            &root_d, err, errlen);
    if (!rc)
        rc = parse_validity("issuing_validity",
                            opts->issuing_validity ? opts->issuing_validity : "P10Y", &issuing_d,
                            err, errlen);
    if (!rc)
        rc = prepare_dir(dir, opts->force, err, errlen);
    if (rc)
        return rc;

    struct pass pw;
    bool generated = !opts->secret.file && !opts->secret.env;
    if (generated) {
        rc = pass_generate(&pw, err, errlen);
    } else {
        bool chosen;
        rc = pass_load(dir, &opts->secret, &pw, &chosen, err, errlen);
        if (!rc && pw.len < CF_CA_PASSPHRASE_MIN) {
            cf_errf(err, errlen, "the passphrase from %s is %zu characters; at least %d are needed",
                    opts->secret.file ? opts->secret.file : opts->secret.env, pw.len,
                    CF_CA_PASSPHRASE_MIN);
            rc = CF_EINVAL;
        }
    }
    if (rc) {
        OPENSSL_cleanse(&pw, sizeof(pw));
        return rc;
    }

    ERR_set_mark();
    EVP_PKEY *root_key = generate_key(opts->key_alg);
    EVP_PKEY *issuing_key = generate_key(opts->key_alg);
    X509_NAME *root_name = ca_name(opts->organization, root_cn);
    X509_NAME *issuing_name = ca_name(opts->organization, issuing_cn);
    X509 *root = NULL, *issuing = NULL;
    struct cf_buf root_pem, issuing_pem;
    cf_buf_init(&root_pem);
    cf_buf_init(&issuing_pem);
    char *root_text = NULL, *issuing_text = NULL;
    uint64_t nb = cf_now_ms() - CF_CA_BACKDATE_MS;
    nb -= nb % 1000;
    uint64_t root_na = 0, issuing_na = 0;

    if (!root_key || !issuing_key) {
        cf_errf(err, errlen, "cannot generate the CA keys: %s", ossl_reason());
        rc = CF_EIO;
        goto out;
    }
    if (!root_name || !issuing_name) {
        cf_errf(err, errlen, "the CA names cannot be encoded (%s): %s",
                root_name ? "issuing_cn or organization" : "root_cn or organization",
                ossl_reason());
        rc = CF_EINVAL;
        goto out;
    }
    if (end_of(&root_d, nb, 0, &root_na) || end_of(&issuing_d, nb, root_na, &issuing_na)) {
        cf_errf(err, errlen, "the CA validity is too short");
        rc = CF_EINVAL;
        goto out;
    }
    root = make_ca_cert(root_key, root_name, root_key, NULL, -1, nb, root_na);
    issuing =
        root ? make_ca_cert(issuing_key, issuing_name, root_key, root, 0, nb, issuing_na) : NULL;
    root_text = root ? cert_pem_text(root) : NULL;
    issuing_text = issuing ? cert_pem_text(issuing) : NULL;
    if (!root_text || !issuing_text) {
        cf_errf(err, errlen, "cannot build the CA certificates: %s", ossl_reason());
        rc = CF_EIO;
        goto out;
    }
    int iter = generated ? KDF_ITER_GENERATED : KDF_ITER_CHOSEN;
    rc = key_encrypt(root_key, &pw, iter, &root_pem, err, errlen);
    if (!rc)
        rc = key_encrypt(issuing_key, &pw, iter, &issuing_pem, err, errlen);
    if (rc)
        goto out;

    /* The passphrase first and the certificates last: a crash in between leaves a directory that
     * cf_ca_open() refuses (keys that do not decrypt or do not match) instead of a wrong CA. */
    bool replace = opts->force;
    if (generated) {
        char line[PASS_MAX + 1];
        memcpy(line, pw.s, pw.len);
        line[pw.len] = '\n';
        rc = write_atomic(dir, PASSPHRASE, line, pw.len + 1, 0600, true, err, errlen);
        OPENSSL_cleanse(line, sizeof(line));
    } else {
        /* A generated passphrase left from an earlier CA would only mislead. */
        char *p = path_of(dir, PASSPHRASE);
        unlink(p);
        free(p);
    }
    if (!rc)
        rc = write_atomic(dir, ROOT_KEY, root_pem.data, root_pem.len, 0600, replace, err, errlen);
    if (!rc)
        rc = write_atomic(dir, ISSUING_KEY, issuing_pem.data, issuing_pem.len, 0600, replace, err,
                          errlen);
    if (!rc)
        rc = write_atomic(dir, ROOT_CERT, root_text, strlen(root_text), 0644, replace, err, errlen);
    if (!rc)
        rc = write_atomic(dir, ISSUING_CERT, issuing_text, strlen(issuing_text), 0644, replace, err,
                          errlen);
    if (!rc)
        cf_log(CF_LOG_INFO, "ca: created root and issuing CA dir=%s key=%s passphrase=%s", dir,
               opts->key_alg == CF_CA_KEY_RSA_3072  ? "RSA-3072"
               : opts->key_alg == CF_CA_KEY_EC_P384 ? "P-384"
                                                    : "P-256",
               generated ? "generated" : "external");
out:
    ERR_pop_to_mark();
    OPENSSL_cleanse(&pw, sizeof(pw));
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(issuing_key);
    X509_NAME_free(root_name);
    X509_NAME_free(issuing_name);
    X509_free(root);
    X509_free(issuing);
    cf_buf_free(&root_pem);
    cf_buf_free(&issuing_pem);
    free(root_text);
    free(issuing_text);
    return rc;
}

/* ---- cf_ca_open ----------------------------------------------------------------------------- */

static int read_cert(const char *path, X509 **out, char *err, size_t errlen)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cf_read_file(path, CA_FILE_MAX, &data, &len, err, errlen);
    if (rc)
        return rc;
    BIO *b = BIO_new_mem_buf(data, (int)len);
    *out = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    free(data);
    if (!*out) {
        cf_errf(err, errlen, "%s is not a PEM certificate: %s", path, ossl_reason());
        return CF_EPARSE;
    }
    return 0;
}

static void warn_if_exposed(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        cf_log(CF_LOG_WARN, "ca: secret file is readable by group or others path=%s mode=%03o",
               path, (unsigned)(st.st_mode & 0777));
}

static int der_of(const X509 *x, uint8_t **out, size_t *len)
{
    int n = i2d_X509(x, NULL);
    if (n <= 0)
        return CF_EPARSE;
    *out = cf_xmalloc((size_t)n);
    unsigned char *p = *out;
    i2d_X509(x, &p);
    *len = (size_t)n;
    return 0;
}

/* Everything cf_ca_issue() needs that is the same for every certificate. */
static int prepare(struct cf_ca *ca, char *err, size_t errlen)
{
    ca->md = md_for(ca->key);
    /* X509_NAME_dup() decodes a fresh copy whose cached encoding is valid, so that threads that
     * copy it into certificates only ever read it. */
    ca->issuer_name = X509_NAME_dup(X509_get_subject_name(ca->issuing));
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(ca->issuing);
    ASN1_OCTET_STRING *computed = NULL;
    if (!skid) {
        const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(ca->issuing);
        skid = computed = key_id(ASN1_STRING_get0_data(bits), ASN1_STRING_length(bits));
    }
    ca->aki_ext = skid ? aki_extension(skid) : NULL;
    ASN1_OCTET_STRING_free(computed);
    ca->bc_ext = bc_extension(false, -1);
    if (!ca->issuer_name || !ca->aki_ext || !ca->bc_ext) {
        cf_errf(err, errlen, "cannot prepare the issuing CA: %s", ossl_reason());
        return CF_EIO;
    }
    if (cf_asn1_time_ms(X509_get0_notBefore(ca->issuing), &ca->not_before_ms) ||
        cf_asn1_time_ms(X509_get0_notAfter(ca->issuing), &ca->not_after_ms)) {
        cf_errf(err, errlen, "the issuing CA's validity dates are invalid");
        return CF_EPARSE;
    }
    if (der_of(ca->issuing, &ca->issuing_der, &ca->issuing_der_len) ||
        der_of(ca->root, &ca->root_der, &ca->root_der_len)) {
        cf_errf(err, errlen, "cannot encode the CA certificates");
        return CF_EPARSE;
    }
    char *a = cf_cert_pem(ca->issuing_der, ca->issuing_der_len);
    char *b = cf_cert_pem(ca->root_der, ca->root_der_len);
    ca->chain_pem = cf_xasprintf("%s%s", a, b);
    free(a);
    free(b);
    return cf_ca_policy_parse("{}", &ca->default_policy, err, errlen);
}

/* The files must fit together: a crash during init, or files copied from two CAs, are caught
 * here rather than by the first relying party. */
static int check_consistent(const struct cf_ca *ca, const char *dir, char *err, size_t errlen)
{
    EVP_PKEY *root_pub = X509_get0_pubkey(ca->root);
    if (X509_check_private_key(ca->issuing, ca->key) != 1) {
        cf_errf(err, errlen, "%s/%s does not belong to %s/%s", dir, ISSUING_KEY, dir, ISSUING_CERT);
        return CF_EINVAL;
    }
    if (!root_pub || X509_verify(ca->root, root_pub) != 1) {
        cf_errf(err, errlen, "%s/%s is not a self-signed root certificate", dir, ROOT_CERT);
        return CF_EINVAL;
    }
    if (X509_check_issued(ca->root, ca->issuing) != X509_V_OK ||
        X509_verify(ca->issuing, root_pub) != 1) {
        cf_errf(err, errlen, "%s/%s was not issued by %s/%s", dir, ISSUING_CERT, dir, ROOT_CERT);
        return CF_EINVAL;
    }
    if (X509_check_ca(ca->issuing) < 1 || !(X509_get_key_usage(ca->issuing) & KU_KEY_CERT_SIGN)) {
        cf_errf(err, errlen, "%s/%s is not allowed to sign certificates", dir, ISSUING_CERT);
        return CF_EINVAL;
    }
    return 0;
}

int cf_ca_open(const char *dir, const struct cf_ca_secret *secret, struct cf_ca **out, char *err,
               size_t errlen)
{
    *out = NULL;
    if (!dir || !*dir) {
        cf_errf(err, errlen, "no CA directory given");
        return CF_EINVAL;
    }
    char *root_path = path_of(dir, ROOT_CERT);
    char *issuing_path = path_of(dir, ISSUING_CERT);
    char *key_path = path_of(dir, ISSUING_KEY);
    struct cf_ca *ca = cf_xcalloc(1, sizeof(*ca));
    struct pass pw;
    bool chosen = false;
    ERR_set_mark();
    int rc = 0;
    struct stat st;
    if (stat(issuing_path, &st) != 0 && errno == ENOENT) {
        cf_errf(err, errlen, "%s holds no CA (no %s): create one with `certflow ca init`", dir,
                ISSUING_CERT);
        rc = CF_ENOENT;
    }
    if (!rc)
        rc = read_cert(root_path, &ca->root, err, errlen);
    if (!rc)
        rc = read_cert(issuing_path, &ca->issuing, err, errlen);
    if (!rc) {
        rc = pass_load(dir, secret, &pw, &chosen, err, errlen);
        if (rc == CF_ENOENT && !chosen)
            cf_errf(err, errlen,
                    "%s has no passphrase file: its keys were encrypted with a passphrase from "
                    "elsewhere (a file such as the systemd credential %s, or an environment "
                    "variable such as %s); give the same source",
                    dir, CF_CA_CREDENTIAL_NAME, CF_CA_PASSPHRASE_ENV);
    }
    if (!rc) {
        warn_if_exposed(key_path);
        if (!chosen) {
            char *p = path_of(dir, PASSPHRASE);
            warn_if_exposed(p);
            free(p);
        }
        rc = key_decrypt(key_path, &pw, &ca->key, err, errlen);
    }
    OPENSSL_cleanse(&pw, sizeof(pw));
    if (!rc)
        rc = check_consistent(ca, dir, err, errlen);
    if (!rc)
        rc = prepare(ca, err, errlen);
    ERR_pop_to_mark();
    free(root_path);
    free(issuing_path);
    free(key_path);
    if (rc) {
        cf_ca_close(ca);
        return rc;
    }
    *out = ca;
    return 0;
}

void cf_ca_close(struct cf_ca *ca)
{
    if (!ca)
        return;
    X509_free(ca->root);
    X509_free(ca->issuing);
    EVP_PKEY_free(ca->key);
    X509_NAME_free(ca->issuer_name);
    X509_EXTENSION_free(ca->aki_ext);
    X509_EXTENSION_free(ca->bc_ext);
    free(ca->chain_pem);
    free(ca->issuing_der);
    free(ca->root_der);
    cf_ca_policy_free(ca->default_policy);
    free(ca);
}

const char *cf_ca_chain_pem(const struct cf_ca *ca)
{
    return ca->chain_pem;
}

const X509 *cf_ca_root_cert(const struct cf_ca *ca)
{
    return ca->root;
}

const X509 *cf_ca_issuing_cert(const struct cf_ca *ca)
{
    return ca->issuing;
}

int cf_ca_pkcs7_chain(const struct cf_ca *ca, const uint8_t *cert_der, size_t cert_len,
                      uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
    const uint8_t *ders[3] = {cert_der, ca->issuing_der, ca->root_der};
    size_t lens[3] = {cert_len, ca->issuing_der_len, ca->root_der_len};
    return cf_pkcs7_certs_only(ders, lens, 3, out, outlen, err, errlen);
}

/* ---- cf_ca_issue ---------------------------------------------------------------------------- */

/* What one issuance works with; freed by issue_free(). */
struct issue {
    struct cf_csr *csr;
    X509_NAME *subject_owned; /* from overrides */
    const X509_NAME *subject;
    GENERAL_NAMES *sans_owned; /* from overrides */
    const GENERAL_NAMES *sans;
    X509 *x;
};

static void issue_free(struct issue *is)
{
    cf_csr_free(is->csr);
    X509_NAME_free(is->subject_owned);
    GENERAL_NAMES_free(is->sans_owned);
    X509_free(is->x);
}

static enum cf_ca_status status_msg(enum cf_ca_status st, char *err, size_t errlen, const char *fmt,
                                    ...) CF_PRINTF(4, 5);
static enum cf_ca_status status_msg(enum cf_ca_status st, char *err, size_t errlen, const char *fmt,
                                    ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

static enum cf_ca_status subject_from_overrides(const struct cf_ca_overrides *ov, struct issue *is,
                                                char *err, size_t errlen)
{
    X509_NAME *n = X509_NAME_new();
    if (!n)
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen, "out of memory");
    is->subject_owned = n;
    for (size_t i = 0; i < ov->n_subject; i++) {
        const struct cf_ca_rdn *r = &ov->subject[i];
        int nid = cf_ca_policy_attr_nid(r->type);
        if (nid == NID_undef)
            return status_msg(CF_CA_COMMON_ERROR, err, errlen,
                              "the subject given for the certificate has an unknown attribute "
                              "\"%s\"",
                              r->type ? r->type : "(null)");
        if (!r->value || !X509_NAME_add_entry_by_NID(n, nid, MBSTRING_UTF8,
                                                     (const unsigned char *)r->value, -1, -1, 0))
            return status_msg(CF_CA_COMMON_ERROR, err, errlen,
                              "the subject attribute %s given for the certificate cannot be "
                              "encoded: %s",
                              r->type, r->value ? ossl_reason() : "no value");
    }
    is->subject = n;
    return CF_CA_OK;
}

static enum cf_ca_status sans_from_overrides(const struct cf_ca_overrides *ov, struct issue *is,
                                             char *err, size_t errlen)
{
    static const int gen_type[] = {GEN_DNS, GEN_IPADD, GEN_EMAIL, GEN_URI};
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens)
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen, "out of memory");
    is->sans_owned = gens;
    for (size_t i = 0; i < ov->n_sans; i++) {
        const struct cf_ca_san *s = &ov->sans[i];
        if ((unsigned)s->type > CF_CA_SAN_URI || !s->value || !*s->value)
            return status_msg(CF_CA_COMMON_ERROR, err, errlen,
                              "SAN %zu given for the certificate has no value or an unknown "
                              "type",
                              i + 1);
        ASN1_STRING *v;
        if (s->type == CF_CA_SAN_IP) {
            v = a2i_IPADDRESS(s->value);
            if (!v)
                return status_msg(CF_CA_COMMON_ERROR, err, errlen,
                                  "SAN ip \"%s\" given for the certificate is not an IP address",
                                  s->value);
        } else {
            v = ASN1_IA5STRING_new();
            if (!v || !ASN1_STRING_set(v, s->value, -1)) {
                ASN1_STRING_free(v);
                return status_msg(CF_CA_CONNECTION_FAILED, err, errlen, "out of memory");
            }
        }
        GENERAL_NAME *g = GENERAL_NAME_new();
        if (!g) {
            ASN1_STRING_free(v);
            return status_msg(CF_CA_CONNECTION_FAILED, err, errlen, "out of memory");
        }
        GENERAL_NAME_set0_value(g, gen_type[s->type], v);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            return status_msg(CF_CA_CONNECTION_FAILED, err, errlen, "out of memory");
        }
    }
    is->sans = gens;
    return CF_CA_OK;
}

/* Decides where the subject and SANs come from, as the template and the call say. */
static enum cf_ca_status choose_names(const struct cf_ca_policy *p,
                                      const struct cf_ca_overrides *ov, struct issue *is, char *err,
                                      size_t errlen)
{
    bool set_subject = ov && ov->set_subject, set_sans = ov && ov->set_sans;
    enum cf_ca_source ss = cf_ca_policy_subject_source(p), sans = cf_ca_policy_san_source(p);
    if (set_subject && ss == CF_CA_SOURCE_CSR)
        return status_msg(CF_CA_REQUEST_FAILED, err, errlen,
                          "the template takes the subject from the CSR and does not accept one "
                          "from the process");
    if (set_sans && sans == CF_CA_SOURCE_CSR)
        return status_msg(CF_CA_REQUEST_FAILED, err, errlen,
                          "the template takes the SANs from the CSR and does not accept them "
                          "from the process");
    if (!set_subject && ss == CF_CA_SOURCE_OVERRIDE)
        return status_msg(CF_CA_COMMON_ERROR, err, errlen,
                          "the template takes the subject from the process "
                          "(executeModifiedPKCS10RequestTask), and none was given");
    if (!set_sans && sans == CF_CA_SOURCE_OVERRIDE)
        return status_msg(CF_CA_COMMON_ERROR, err, errlen,
                          "the template takes the SANs from the process "
                          "(executeModifiedPKCS10RequestTask), and none were given");
    enum cf_ca_status st = CF_CA_OK;
    if (set_subject)
        st = subject_from_overrides(ov, is, err, errlen);
    else
        is->subject = cf_csr_subject(is->csr);
    if (!st && set_sans)
        st = sans_from_overrides(ov, is, err, errlen);
    else if (!st)
        is->sans = cf_csr_sans(is->csr);
    return st;
}

static bool same_bits(const ASN1_BIT_STRING *a, const ASN1_BIT_STRING *b)
{
    return a && b && ASN1_STRING_length(a) == ASN1_STRING_length(b) &&
           memcmp(ASN1_STRING_get0_data(a), ASN1_STRING_get0_data(b),
                  (size_t)ASN1_STRING_length(a)) == 0;
}

/* Copies the CSR's SubjectPublicKeyInfo into the certificate as it is, without decoding it. */
static bool copy_spki(X509 *x, const struct cf_csr *csr)
{
    const X509_ALGOR *alg;
    const ASN1_BIT_STRING *bits;
    cf_csr_spki(csr, &alg, &bits);
    const ASN1_OBJECT *obj;
    int ptype;
    const void *pval;
    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    /* Key algorithm parameters are absent, NULL, an OID (a named curve) or a SEQUENCE, which
     * ASN1_TYPE keeps as an ASN1_STRING; a BOOLEAN would be nonsense and is refused. */
    if (ptype == V_ASN1_BOOLEAN)
        return false;
    void *param = NULL;
    if (ptype == V_ASN1_OBJECT)
        param = OBJ_dup(pval);
    else if (ptype != V_ASN1_UNDEF && ptype != V_ASN1_NULL)
        param = ASN1_STRING_dup(pval);
    int len = ASN1_STRING_length(bits);
    ASN1_OBJECT *o = OBJ_dup(obj);
    unsigned char *enc = len > 0 ? OPENSSL_memdup(ASN1_STRING_get0_data(bits), (size_t)len) : NULL;
    bool param_ok = param || ptype == V_ASN1_UNDEF || ptype == V_ASN1_NULL;
    if (o && enc && param_ok &&
        X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), o, ptype, param, enc, len) == 1)
        return true;
    OPENSSL_free(enc);
    ASN1_OBJECT_free(o);
    if (ptype == V_ASN1_OBJECT)
        ASN1_OBJECT_free(param);
    else
        ASN1_STRING_free(param);
    return false;
}

static enum cf_ca_status build(const struct cf_ca *ca, const struct cf_ca_policy *p,
                               struct issue *is, uint64_t now_ms, char *err, size_t errlen)
{
    if (now_ms > ca->not_after_ms) {
        char when[CF_TIME_ISO_LEN];
        cf_time_iso(ca->not_after_ms, when);
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen,
                          "the embedded issuing CA expired on %s", when);
    }
    uint64_t nb = now_ms - now_ms % 1000;
    nb = nb > CF_CA_BACKDATE_MS ? nb - CF_CA_BACKDATE_MS : 0;
    if (nb < ca->not_before_ms)
        nb = ca->not_before_ms;
    uint64_t na;
    if (end_of(cf_ca_policy_validity(p), nb, ca->not_after_ms, &na))
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen,
                          "the embedded issuing CA's validity ends before the certificate's "
                          "would begin");

    EVP_PKEY *pkey = cf_csr_pubkey(is->csr);
    const X509_EXTENSION *ku = cf_ca_policy_key_usage_ext(p, pkey);
    const X509_EXTENSION *eku = cf_ca_policy_ext_key_usage_ext(p);
    const ASN1_BIT_STRING *bits;
    const X509_ALGOR *alg;
    cf_csr_spki(is->csr, &alg, &bits);
    bool empty_subject = X509_NAME_entry_count(is->subject) == 0;
    int n_sans = is->sans ? sk_GENERAL_NAME_num(is->sans) : 0;

    X509 *x = is->x = X509_new();
    ASN1_OCTET_STRING *skid = key_id(ASN1_STRING_get0_data(bits), ASN1_STRING_length(bits));
    bool ok = x && skid && ku && X509_set_version(x, X509_VERSION_3) && set_serial(x) &&
              X509_set_issuer_name(x, ca->issuer_name) && set_validity(x, nb, na) &&
              X509_set_subject_name(x, is->subject) && copy_spki(x, is->csr) &&
              X509_add_ext(x, ca->bc_ext, -1) && X509_add_ext(x, (X509_EXTENSION *)ku, -1) &&
              (!eku || X509_add_ext(x, (X509_EXTENSION *)eku, -1)) &&
              X509_add1_ext_i2d(x, NID_subject_key_identifier, skid, 0, X509V3_ADD_APPEND) == 1 &&
              X509_add_ext(x, ca->aki_ext, -1) &&
              /* RFC 5280 §4.2.1.6: with an empty subject the SAN extension is critical. */
              (!n_sans || X509_add1_ext_i2d(x, NID_subject_alt_name, (void *)is->sans,
                                            empty_subject, X509V3_ADD_APPEND) == 1);
    ASN1_OCTET_STRING_free(skid);
    if (!ok)
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen,
                          "the embedded CA cannot build the certificate: %s", ossl_reason());
    if (X509_sign(x, ca->key, ca->md) <= 0)
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen,
                          "the embedded CA cannot sign the certificate: %s", ossl_reason());
    return CF_CA_OK;
}

static enum cf_ca_status encode(const X509 *x, struct cf_ca_issued *out, char *err, size_t errlen)
{
    if (der_of(x, &out->der, &out->der_len))
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen,
                          "the embedded CA cannot encode the certificate: %s", ossl_reason());
    if (cf_cert_info_from_x509(x, out->der, out->der_len, &out->info, err, errlen))
        return CF_CA_CONNECTION_FAILED;
    return CF_CA_OK;
}

/* Takes a certificate from the ledger, after checking it certifies the CSR's key. */
static enum cf_ca_status replay(const struct cf_csr *csr, uint8_t *der, size_t len, const char *key,
                                struct cf_ca_issued *out, char *err, size_t errlen)
{
    out->der = der;
    out->der_len = len;
    out->replayed = true;
    if (cf_cert_info_from_der(der, len, &out->info, err, errlen))
        return CF_CA_CONNECTION_FAILED;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    const X509_ALGOR *alg, *calg;
    const ASN1_BIT_STRING *cbits;
    cf_csr_spki(csr, &calg, &cbits);
    X509_ALGOR *xalg = NULL;
    bool same = x && X509_PUBKEY_get0_param(NULL, NULL, NULL, &xalg, X509_get_X509_PUBKEY(x)) &&
                (alg = xalg) && X509_ALGOR_cmp(alg, calg) == 0 &&
                same_bits(X509_get0_pubkey_bitstr(x), cbits);
    X509_free(x);
    if (!same)
        return status_msg(CF_CA_COMMON_ERROR, err, errlen,
                          "idempotency key \"%s\" was already used for a certificate of another "
                          "public key; each request needs its own key",
                          key);
    return CF_CA_OK;
}

static enum cf_ca_status issue(const struct cf_ca *ca, const struct cf_ca_request *req,
                               struct issue *is, struct cf_ca_issued *out, char *err, size_t errlen)
{
    const struct cf_ca_policy *p = req->policy ? req->policy : ca->default_policy;
    if (!req->csr || !req->csr_len)
        return status_msg(CF_CA_COMMON_ERROR, err, errlen, "no CSR: the request is empty");
    if (cf_csr_decode(req->csr, req->csr_len, &is->csr, err, errlen))
        return CF_CA_COMMON_ERROR;
    EVP_PKEY *pkey = cf_csr_pubkey(is->csr);
    if (!pkey) {
        char alg[80];
        return status_msg(CF_CA_REQUEST_FAILED, err, errlen,
                          "the CSR's key algorithm %s is not supported by the embedded CA",
                          cf_csr_key_algorithm(is->csr, alg, sizeof(alg)));
    }
    if (cf_csr_verify(is->csr, err, errlen))
        return CF_CA_COMMON_ERROR;

    const char *key = req->idempotency_key;
    const struct cf_ca_ledger *ledger = req->ledger;
    if (key && ledger) {
        uint8_t *der = NULL;
        size_t len = 0;
        char lerr[256] = "";
        int rc = ledger->find(ledger->arg, key, &der, &len, lerr, sizeof(lerr));
        if (rc == 0)
            return replay(is->csr, der, len, key, out, err, errlen);
        if (rc != CF_ENOENT)
            return status_msg(CF_CA_CONNECTION_FAILED, err, errlen,
                              "the embedded CA cannot read its ledger: %s",
                              *lerr ? lerr : cf_strerror(rc));
    }

    if (cf_ca_policy_check_key(p, pkey, err, errlen))
        return CF_CA_REQUEST_FAILED;
    const ASN1_BIT_STRING *bits;
    const X509_ALGOR *alg;
    cf_csr_spki(is->csr, &alg, &bits);
    if (same_bits(bits, X509_get0_pubkey_bitstr(ca->issuing)) ||
        same_bits(bits, X509_get0_pubkey_bitstr(ca->root)))
        return status_msg(CF_CA_REQUEST_FAILED, err, errlen,
                          "the CSR's public key is one of the CA's own keys");
    enum cf_ca_status st = choose_names(p, req->overrides, is, err, errlen);
    if (st)
        return st;
    if (cf_ca_policy_check_subject(p, is->subject, err, errlen) ||
        cf_ca_policy_check_sans(p, is->sans, err, errlen))
        return CF_CA_REQUEST_FAILED;
    if (X509_NAME_entry_count(is->subject) == 0 && (!is->sans || !sk_GENERAL_NAME_num(is->sans)))
        return status_msg(CF_CA_REQUEST_FAILED, err, errlen,
                          "the certificate would have neither a subject nor a subject "
                          "alternative name");

    st = build(ca, p, is, req->now_ms ? req->now_ms : cf_now_ms(), err, errlen);
    if (!st)
        st = encode(is->x, out, err, errlen);
    if (st || !key || !ledger)
        return st;

    uint8_t *existing = NULL;
    size_t existing_len = 0;
    char lerr[256] = "";
    int rc = ledger->record(ledger->arg, key, out->der, out->der_len, &existing, &existing_len,
                            lerr, sizeof(lerr));
    if (rc == CF_EEXIST && existing) {
        /* Another call with the same key won the race: its certificate is the one. */
        cf_ca_issued_clear(out);
        return replay(is->csr, existing, existing_len, key, out, err, errlen);
    }
    free(existing);
    if (rc)
        return status_msg(CF_CA_CONNECTION_FAILED, err, errlen,
                          "the embedded CA cannot record the certificate in its ledger: %s",
                          *lerr ? lerr : cf_strerror(rc));
    return CF_CA_OK;
}

enum cf_ca_status cf_ca_issue(const struct cf_ca *ca, const struct cf_ca_request *req,
                              struct cf_ca_issued *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    /* Leave this thread's OpenSSL error queue as the caller had it. */
    ERR_set_mark();
    struct issue is;
    memset(&is, 0, sizeof(is));
    enum cf_ca_status st = issue(ca, req, &is, out, err, errlen);
    issue_free(&is);
    ERR_pop_to_mark();
    if (st)
        cf_ca_issued_clear(out);
    return st;
}

void cf_ca_issued_clear(struct cf_ca_issued *out)
{
    if (!out)
        return;
    free(out->der);
    cf_cert_info_clear(&out->info);
    memset(out, 0, sizeof(*out));
}
