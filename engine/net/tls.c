/*
 * TLS contexts of the HTTP listeners, on Mozilla's "intermediate" profile: TLS 1.2 and 1.3 only,
 * ECDHE with AES-GCM or CHACHA20-POLY1305 for 1.2, groups X25519, P-256 and P-384, the client's
 * cipher preference, no renegotiation. A TLS_CLIENT listener demands a client certificate that
 * chains to its own truststore (never the system's), carries the clientAuth purpose and, when a
 * CRL file is given, is not revoked, with every certificate of the chain checked. The byte
 * pumping through memory BIOs is http.c's, and so is swapping contexts when the files are read
 * again (cf_http_server_reload_tls): each context is built from the files alone, so building one
 * again gives a fresh truststore, CRL set, session cache and ticket keys.
 */
#include "net/http_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char groups[] = "X25519:P-256:P-384";

/* The OpenSSL reason of the oldest queued error, or `fallback`. Clears the queue. */
static void ossl_reason(char *out, size_t outlen, const char *fallback)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(out, outlen, "%s", r);
    else if (e)
        ERR_error_string_n(e, out, outlen);
    else
        snprintf(out, outlen, "%s", fallback);
    ERR_clear_error();
}

/* A daemon has no terminal to ask on, and must not block its loop asking: an encrypted key file
 * fails to load instead of OpenSSL prompting for its passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return 0;
}

/* Only HTTP/1.1 is spoken; a client offering only h2 gets no ALPN answer and falls back. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *cf__tls_ctx_new(const struct cf_listener_config *lc, size_t index, char *err,
                         size_t errlen)
{
    char why[256];
    ERR_clear_error();
    if (!lc->cert_file || !lc->key_file) {
        cf_errf(err, errlen, "listener %zu: a TLS listener needs cert_file and key_file", index);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ossl_reason(why, sizeof(why), "SSL_CTX_new failed");
        cf_errf(err, errlen, "listener %zu: %s", index, why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Clients know best whether they have AES hardware; let their order win. */
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, tls13_suites) != 1 ||
        SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        ossl_reason(why, sizeof(why), "cipher setup failed");
        cf_errf(err, errlen, "listener %zu: cipher or group setup failed: %s", index, why);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    /* Resumed sessions must stay tied to this listener's verification settings. */
    char sid[32];
    snprintf(sid, sizeof(sid), "certflow-%zu", index);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sid, (unsigned)strlen(sid));

    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, lc->cert_file) != 1) {
        ossl_reason(why, sizeof(why), "unreadable");
        cf_errf(err, errlen, "listener %zu: cannot load the certificate chain '%s': %s", index,
                lc->cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, lc->key_file, SSL_FILETYPE_PEM) != 1) {
        ossl_reason(why, sizeof(why), "unreadable");
        cf_errf(err, errlen, "listener %zu: cannot load the private key '%s': %s", index,
                lc->key_file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ossl_reason(why, sizeof(why), "mismatch");
        cf_errf(err, errlen, "listener %zu: the key '%s' does not match the certificate '%s': %s",
                index, lc->key_file, lc->cert_file, why);
        goto fail;
    }

    if (lc->kind != CF_LISTEN_TLS_CLIENT) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    if (!lc->ca_file) {
        cf_errf(err, errlen, "listener %zu: a client-certificate listener needs ca_file", index);
        goto fail;
    }
    /* The context's store starts empty; only ca_file goes in, never the system bundle. */
    if (SSL_CTX_load_verify_file(ctx, lc->ca_file) != 1) {
        ossl_reason(why, sizeof(why), "no certificates");
        cf_errf(err, errlen, "listener %zu: cannot load the truststore '%s': %s", index,
                lc->ca_file, why);
        goto fail;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(lc->ca_file);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    ERR_clear_error();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify_depth(ctx, 8);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_CLIENT);
    if (lc->crl_file && *lc->crl_file) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (!lookup || X509_load_crl_file(lookup, lc->crl_file, X509_FILETYPE_PEM) <= 0) {
            ossl_reason(why, sizeof(why), "no CRL found");
            cf_errf(err, errlen,
                    "listener %zu: cannot load the CRL file '%s' (PEM X509 CRLs expected): %s",
                    index, lc->crl_file, why);
            goto fail;
        }
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void cf__tls_failure_reason(SSL *ssl, char *out, size_t outlen)
{
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    char why[200];
    ossl_reason(why, sizeof(why), "connection closed");
    if (vr != X509_V_OK)
        snprintf(out, outlen, "%s (certificate: %s)", why, X509_verify_cert_error_string(vr));
    else
        snprintf(out, outlen, "%s", why);
}
