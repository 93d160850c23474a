/*
 * The embedded CA: a two-tier CA (a root and an issuing CA) that lives in a directory and issues
 * end-entity certificates from PKCS#10 requests under a template's procedure (ca/policy.h). It is
 * certflow's default CA connector; the connector interface, the certificates store and the
 * enrollment protocols are built on top of it by others. This file does no I/O on a loop and
 * knows nothing of the engine: cf_ca_issue() is a plain blocking function for a worker thread.
 *
 * Directory layout (created by cf_ca_init(), read by cf_ca_open()):
 *   root.pem      the root CA certificate (0644)
 *   root.key      its private key, PKCS#8 encrypted PEM ("ENCRYPTED PRIVATE KEY",
 *                 PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC) (0600)
 *   issuing.pem   the issuing CA certificate (0644)
 *   issuing.key   its private key, encrypted the same way (0600)
 *   passphrase    the key files' passphrase, when no other source was given at init (0600)
 * The directory itself is created 0700. Every file is written to a temporary name, fsync'ed and
 * renamed into place, and the directory is fsync'ed; a crash leaves each file either old or new.
 *
 * The passphrase, and what encryption at rest does and does not do: the key files are useless
 * without the passphrase, so a backup, a copied file or a leaked volume snapshot of the key files
 * alone gives nothing away. When the passphrase lives in the same directory (the default, a
 * 0600 file of 256 random bits), anyone who can read the whole directory can read the keys: that
 * default protects against copies of the key files, not against an attacker with the service's
 * file permissions. To separate the two, give the passphrase from elsewhere (struct cf_ca_secret):
 * a file outside the data directory, ideally a systemd credential (LoadCredentialEncrypted=
 * certflow-ca-passphrase:..., read from $CREDENTIALS_DIRECTORY/certflow-ca-passphrase, which
 * systemd can seal to the TPM), or an environment variable (weaker: the environment of a process
 * is visible to its user through /proc and is inherited by children). A passphrase chosen by a
 * person gets 600,000 PBKDF2 iterations; the generated one, already 256 bits strong, gets
 * OpenSSL's default of 2,048, which keeps opening fast without weakening anything.
 * Only the issuing key is decrypted by cf_ca_open(); the root key stays encrypted on disk
 * (operators who want it offline may move root.key away after init).
 *
 * Threads: cf_ca_init() and cf_ca_open() may run on any thread. An open struct cf_ca is
 * immutable: any number of threads may call cf_ca_issue() and the getters on it at once (the
 * libuv thread pool does), with the same or different policies. What they share, read-only, is
 * the issuing key (an EVP_PKEY, which OpenSSL 3 allows to sign from several threads at once),
 * pre-encoded issuer name, authority key identifier and basic constraints, and the chain. Each
 * call builds its own certificate and signing context, and random serials come from OpenSSL's
 * per-thread DRBGs. Nothing is global. cf_ca_close() must wait until no call uses the CA.
 *
 * Errors: cf_ca_init()/cf_ca_open() return 0 or a negative CF_E* code with a message in `err`.
 * cf_ca_issue() returns a class (ca/ca.h), because the class is what the caller acts on: it
 * becomes the BPMN error of the task; its message goes into `err` too.
 */
#ifndef CF_CA_EMBEDDED_H
#define CF_CA_EMBEDDED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "ca/ca.h"
#include "ca/policy.h"
#include "ca/x509.h"

/* Conventional names for the passphrase sources, for the daemon and the CLI to offer. */
#define CF_CA_PASSPHRASE_ENV "CERTFLOW_CA_PASSPHRASE"
#define CF_CA_CREDENTIAL_NAME "certflow-ca-passphrase"

/* A chosen passphrase shorter than this is refused; the generated one is 43 characters. */
#define CF_CA_PASSPHRASE_MIN 16

/*
 * Where the key files' passphrase comes from, first match wins: `file` (its content, without one
 * trailing newline), then the environment variable named `env`, then the directory's passphrase
 * file. At init, a CA given neither file nor env gets a generated passphrase in its directory.
 */
struct cf_ca_secret {
    const char *file;
    const char *env;
};

enum cf_ca_key_alg {
    CF_CA_KEY_EC_P256 = 0,  /* ECDSA P-256 with SHA-256: the default */
    CF_CA_KEY_EC_P384 = 1,  /* ECDSA P-384 with SHA-384 */
    CF_CA_KEY_RSA_3072 = 2, /* RSA-3072 with SHA-256 (PKCS#1 v1.5) */
};

/* Settings of cf_ca_init(); a zeroed struct, or NULL, means every default. */
struct cf_ca_init_opts {
    enum cf_ca_key_alg key_alg;
    const char *root_cn;          /* default "certflow Root CA" */
    const char *issuing_cn;       /* default "certflow Issuing CA" */
    const char *organization;     /* O of both names; none by default */
    const char *root_validity;    /* ISO-8601 duration, default "P20Y" */
    const char *issuing_validity; /* default "P10Y"; cut to the root's notAfter */
    bool force;                   /* replace a CA that already exists in the directory */
    struct cf_ca_secret secret;
};

struct cf_ca;

/*
 * Creates a root and an issuing CA in `dir` (created 0700 when missing), without opening them.
 * Both CA certificates: v3, random 128-bit serial, notBefore backdated by CF_CA_BACKDATE_MS,
 * basicConstraints critical CA:TRUE (pathlen:0 on the issuing CA), keyUsage critical keyCertSign
 * and cRLSign, subject and authority key identifiers.
 * CF_EEXIST when the directory already holds any CA file and `force` is not set; CF_EINVAL for a
 * bad option (the message names it); CF_EIO for a file that cannot be written.
 * Not atomic as a whole: each file is, and a crash part way through leaves files that
 * cf_ca_open() refuses as inconsistent rather than a CA that issues wrongly; run init again with
 * force.
 */
int cf_ca_init(const char *dir, const struct cf_ca_init_opts *opts, char *err, size_t errlen);

/*
 * Loads the CA of `dir`, decrypts the issuing key with the passphrase from `secret` (NULL: the
 * directory's passphrase file) and checks that it all fits together: the issuing key belongs to
 * the issuing certificate, which the root signed and which may sign certificates.
 * CF_ENOENT when the directory holds no CA; CF_EAUTH when the passphrase does not decrypt the key;
 * CF_EPARSE for a damaged file; CF_EINVAL when the files do not fit together. A key file that
 * others than its owner may read is logged as a warning.
 */
int cf_ca_open(const char *dir, const struct cf_ca_secret *secret, struct cf_ca **out, char *err,
               size_t errlen);
void cf_ca_close(struct cf_ca *ca);

/* The certificates are backdated by this much, so that a client whose clock runs a few minutes
 * late still accepts a certificate the moment it is issued. */
#define CF_CA_BACKDATE_MS (5 * 60 * 1000)

/* Subject and SANs given by the caller instead of those in the CSR
 * (executeModifiedPKCS10RequestTask). The CSR still proves possession of the key. */
struct cf_ca_rdn {
    const char *type;  /* a short name of ca/policy.h's list: "CN", "O", "OU", ... */
    const char *value; /* UTF-8 */
};

enum cf_ca_san_type {
    CF_CA_SAN_DNS = 0,
    CF_CA_SAN_IP = 1, /* text: "192.0.2.1" or "2001:db8::1" */
    CF_CA_SAN_EMAIL = 2,
    CF_CA_SAN_URI = 3,
};

struct cf_ca_san {
    enum cf_ca_san_type type;
    const char *value;
};

struct cf_ca_overrides {
    bool set_subject; /* when true, `subject` (in this order, most general first) replaces the
                         CSR's subject; n_subject may be 0 for an empty subject */
    const struct cf_ca_rdn *subject;
    size_t n_subject;
    bool set_sans; /* when true, `sans` replaces the CSR's SANs; n_sans may be 0 for none */
    const struct cf_ca_san *sans;
    size_t n_sans;
};

/*
 * Idempotency. A call retried after a timeout, or resumed after a crash, must not issue a second
 * certificate. The embedded CA has no storage of its own, so the layer above lends it a ledger,
 * typically a table of (idempotency key -> certificate DER) in the certificates store:
 *
 *   find(arg, key, &der, &len): 0 with a malloc'ed copy of the certificate issued for `key`;
 *       CF_ENOENT when there is none; another CF_E* code when the ledger cannot be read.
 *   record(arg, key, der, len, &existing, &existing_len): stores the certificate for `key`
 *       durably before the call returns it; 0 when stored, or CF_EEXIST with a malloc'ed copy of
 *       the certificate another call recorded for the same key first (the ledger must make this
 *       check and the insert one atomic step, such as INSERT with a UNIQUE key); another CF_E*
 *       code when the ledger cannot be written.
 *
 * With a ledger and a key, cf_ca_issue() decodes and verifies the CSR, asks find(): when a
 * certificate exists for the key and its public key is the CSR's, it is returned as is (replayed
 * = true) without checking the template again (it was checked when it was issued, and the
 * process must see the same answer); a different public key is CF_CA_COMMON_ERROR, since the key
 * was reused for another request. Otherwise it issues, and record() decides which of two racing
 * calls wins; the loser returns the winner's certificate. A certificate that was signed but could
 * not be recorded is not returned (CF_CA_CONNECTION_FAILED), so it is never used without a record.
 * Both functions may be called from several threads at once.
 * Without a ledger the key is ignored and the caller deduplicates.
 */
typedef int (*cf_ca_ledger_find_fn)(void *arg, const char *key, uint8_t **der, size_t *len,
                                    char *err, size_t errlen);
typedef int (*cf_ca_ledger_record_fn)(void *arg, const char *key, const uint8_t *der, size_t len,
                                      uint8_t **existing, size_t *existing_len, char *err,
                                      size_t errlen);
struct cf_ca_ledger {
    cf_ca_ledger_find_fn find;
    cf_ca_ledger_record_fn record;
    void *arg;
};

struct cf_ca_request {
    const uint8_t *csr; /* DER or PEM (see cf_csr_decode()) */
    size_t csr_len;
    const struct cf_ca_policy *policy;       /* NULL: the default procedure ("{}") */
    const struct cf_ca_overrides *overrides; /* NULL: none */
    const char *idempotency_key;             /* NULL: none */
    const struct cf_ca_ledger *ledger;       /* NULL: none */
    uint64_t now_ms;                         /* issuance time; 0: the clock */
};

struct cf_ca_issued {
    uint8_t *der; /* the certificate; freed by cf_ca_issued_clear() */
    size_t der_len;
    struct cf_cert_info info; /* serial, names, dates and SHA-256, for the store */
    bool replayed;            /* true when returned from the ledger instead of issued now */
};

/*
 * Issues a certificate for `req` and fills `out` (zeroed on failure):
 * 1. the CSR is decoded and its signature verified (CF_CA_COMMON_ERROR when it is missing,
 *    unparsable or does not verify);
 * 2. with a ledger and a key, an earlier certificate for the key is returned (see above);
 * 3. the template is enforced (CF_CA_REQUEST_FAILED with the reason): key type and size, subject
 *    and SAN policy, whether overrides are allowed or needed, and a key that is one of the CA's
 *    own is refused;
 * 4. the certificate is built: v3, a random positive 127-bit serial (16 random bytes, top bit
 *    cleared, never 0), issuer = the issuing CA, notBefore = now - CF_CA_BACKDATE_MS (whole
 *    seconds), notAfter = notBefore + validity - 1 s cut to the issuing CA's notAfter, subject
 *    and SANs from the CSR or the overrides (SANs critical when the subject is empty, RFC 5280
 *    §4.2.1.6; a certificate with neither is refused), the CSR's SubjectPublicKeyInfo as is,
 *    basicConstraints critical CA:FALSE, keyUsage critical and extendedKeyUsage from the
 *    template, subject key identifier (SHA-1 of the key, RFC 5280 §4.2.1.2 method 1) and
 *    authority key identifier (the issuing CA's); other extensions the CSR requests are ignored;
 * 5. it is signed with the issuing key (ECDSA with SHA-256 or SHA-384, or RSA with SHA-256).
 * An internal failure (signing, randomness, the ledger) is CF_CA_CONNECTION_FAILED, and so is
 * an issuing CA that has expired.
 */
enum cf_ca_status cf_ca_issue(const struct cf_ca *ca, const struct cf_ca_request *req,
                              struct cf_ca_issued *out, char *err, size_t errlen);
/* Frees what cf_ca_issue() put into `out` and zeroes it; NULL is a no-op. */
void cf_ca_issued_clear(struct cf_ca_issued *out);

/* The issuing CA's certificate then the root's, as PEM text; owned by `ca`. */
const char *cf_ca_chain_pem(const struct cf_ca *ca);
/* The CA certificates, owned by `ca`, for callers that need X509 objects (protocol servers).
 * Read-only: they are shared with every thread that uses the CA. */
const X509 *cf_ca_root_cert(const struct cf_ca *ca);
const X509 *cf_ca_issuing_cert(const struct cf_ca *ca);

/*
 * A DER PKCS#7 certs-only bundle of `cert_der`, the issuing CA and the root, in that order, for
 * the P7ResponseField of executePKCS10RequestTask. The certificate is not parsed, only checked to
 * be one DER SEQUENCE. The caller frees *out. CF_EPARSE for a certificate that is not.
 */
int cf_ca_pkcs7_chain(const struct cf_ca *ca, const uint8_t *cert_der, size_t cert_len,
                      uint8_t **out, size_t *outlen, char *err, size_t errlen);

#endif
