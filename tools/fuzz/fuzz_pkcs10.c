/*
 * libFuzzer target for the PKCS#10 path of the CA side: cf_csr_decode() (PEM or DER), the
 * signature check, the template checks of ca/policy.c under a lenient and a strict procedure,
 * and a whole cf_ca_issue() on an embedded CA created once in a temporary directory.
 *
 * Besides the sanitizers' findings it traps when a promise breaks:
 * - cf_csr_decode() accepts nothing that OpenSSL's d2i_X509_REQ() refuses, and for what both
 *   accept the subject, the public key and the signature verdict are the same (certflow's own
 *   ASN.1 templates must stay a faster copy of OpenSSL's parser, never a different one);
 * - cf_ca_issue() answers one of its four classes, with a message on failure and a certificate
 *   that the issuing CA's key verifies on success.
 * It is not built by CMake; build and run it with
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_POSIX_C_SOURCE=200809L -I. -Iengine -Iengine/include tools/fuzz/fuzz_pkcs10.c \
 *       ca/ca.c ca/embedded.c ca/policy.c ca/x509.c engine/base/base.c engine/base/iso8601.c \
 *       engine/base/log.c engine/base/error.c -lcrypto -ljansson -lm -o build/fuzz_pkcs10
 *   mkdir -p build/fuzz_pkcs10_corpus
 *   i=0; for k in "ec -pkeyopt ec_paramgen_curve:P-256" rsa:1024 ed25519; do i=$((i + 1))
 *     openssl req -new -newkey $k -nodes -keyout /dev/null -subj "/O=x/CN=a.example.com" \
 *       -addext "subjectAltName=DNS:a.example.com,IP:192.0.2.1,email:a@example.com" \
 *       -outform DER -out build/fuzz_pkcs10_corpus/seed$i.der
 *   done
 *   ./build/fuzz_pkcs10 -max_len=4096 build/fuzz_pkcs10_corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "ca/embedded.h"
#include "ca/policy.h"
#include "ca/x509.h"
#include "certflow/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cf_ca *ca;
static struct cf_ca_policy *lenient, *strict;

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cf_log_set_level(CF_LOG_ERROR);
    char dir[] = "/tmp/cf-fuzz-pkcs10.XXXXXX";
    char err[512];
    check(mkdtemp(dir) != NULL);
    char *cadir = malloc(sizeof(dir) + 3);
    check(cadir != NULL);
    snprintf(cadir, sizeof(dir) + 3, "%s/ca", dir);
    if (cf_ca_init(cadir, NULL, err, sizeof(err)) ||
        cf_ca_open(cadir, NULL, &ca, err, sizeof(err))) {
        fprintf(stderr, "fuzz_pkcs10: cannot create the CA: %s\n", err);
        abort();
    }
    free(cadir);
    check(cf_ca_policy_parse("{\"keyTypes\": {\"RSA\": 2048, \"EC\": [\"P-256\", \"P-384\", "
                             "\"P-521\"], \"Ed25519\": true, \"Ed448\": true}, \"subject\": "
                             "{\"required\": [], \"allowed\": [\"CN\", \"C\", \"ST\", \"L\", "
                             "\"street\", \"O\", \"OU\", \"title\", \"GN\", \"SN\", \"initials\", "
                             "\"pseudonym\", \"serialNumber\", \"emailAddress\", \"DC\", "
                             "\"UID\", \"postalCode\", \"organizationIdentifier\"]}, \"san\": "
                             "{\"max\": 1000, \"wildcards\": true}}",
                             &lenient, err, sizeof(err)) == 0);
    check(cf_ca_policy_parse("{\"keyTypes\": {\"RSA\": 3072, \"EC\": [\"P-384\"]}, \"san\": "
                             "{\"domains\": [\"example.com\"], \"max\": 2, \"required\": true, "
                             "\"types\": [\"dns\", \"email\", \"uri\"]}}",
                             &strict, err, sizeof(err)) == 0);
    return 0;
}

/* cf_csr_decode() against d2i_X509_REQ() on the same DER. */
static void differential(const struct cf_csr *csr)
{
    size_t len;
    const uint8_t *der = cf_csr_der(csr, &len);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    check(req != NULL && p == der + len);
    check(X509_NAME_cmp(cf_csr_subject(csr), X509_REQ_get_subject_name(req)) == 0);
    EVP_PKEY *ours = cf_csr_pubkey(csr), *theirs = X509_REQ_get0_pubkey(req);
    if (ours && theirs) {
        check(EVP_PKEY_eq(ours, theirs) == 1);
        int verified = cf_csr_verify(csr, NULL, 0) == 0;
        check(verified == (X509_REQ_verify(req, theirs) == 1));
    }
    X509_REQ_free(req);
    ERR_clear_error();
}

static void policies(const struct cf_csr *csr)
{
    const struct cf_ca_policy *ps[] = {lenient, strict};
    char err[512];
    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY *k = cf_csr_pubkey(csr);
        if (k)
            cf_ca_policy_check_key(ps[i], k, err, sizeof(err));
        cf_ca_policy_check_subject(ps[i], cf_csr_subject(csr), err, sizeof(err));
        cf_ca_policy_check_sans(ps[i], cf_csr_sans(csr), err, sizeof(err));
    }
}

static void issue(const uint8_t *data, size_t size, const struct cf_ca_policy *p)
{
    struct cf_ca_request req = {.csr = data, .csr_len = size, .policy = p};
    struct cf_ca_issued out;
    char err[512] = "";
    enum cf_ca_status st = cf_ca_issue(ca, &req, &out, err, sizeof(err));
    check(st == CF_CA_OK || st == CF_CA_COMMON_ERROR || st == CF_CA_REQUEST_FAILED ||
          st == CF_CA_CONNECTION_FAILED);
    if (st != CF_CA_OK) {
        check(out.der == NULL && err[0] != '\0');
        return;
    }
    const unsigned char *q = out.der;
    X509 *x = d2i_X509(NULL, &q, (long)out.der_len);
    check(x != NULL && q == out.der + out.der_len);
    check(X509_verify(x, X509_get0_pubkey(cf_ca_issuing_cert(ca))) == 1);
    X509_free(x);
    cf_ca_issued_clear(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cf_csr *csr = NULL;
    char err[512];
    if (cf_csr_decode(data, size, &csr, err, sizeof(err)) == 0) {
        differential(csr);
        policies(csr);
        cf_csr_free(csr);
    }
    issue(data, size, lenient);
    issue(data, size, strict);
    return 0;
}
