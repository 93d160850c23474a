/*
 * Sealing of secret values at rest (see seal.h): libsodium's XChaCha20-Poly1305 and the key file
 * or credential. The store (store.c) decides which values to seal and caches the key.
 */
#include "store/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "base/base.h"

#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

bool cf_seal_is_sealed(const char *text)
{
    return text && strncmp(text, CF_SEAL_PREFIX, strlen(CF_SEAL_PREFIX)) == 0;
}

/* Reads 64 hex digits (and an optional newline) from `path` into `key`. */
static int read_key(const char *path, uint8_t key[CF_SEAL_KEY_BYTES], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return CF_ENOENT;
        cf_errf(err, errlen, "cannot read the secrets key %s: %s", path, strerror(errno));
        return CF_EIO;
    }
    char hex[2 * CF_SEAL_KEY_BYTES + 3];
    ssize_t n = read(fd, hex, sizeof(hex));
    close(fd);
    size_t len = n > 0 ? (size_t)n : 0;
    while (len && (hex[len - 1] == '\n' || hex[len - 1] == '\r'))
        len--;
    size_t bin_len = 0;
    int bad = len != 2 * CF_SEAL_KEY_BYTES ||
              sodium_hex2bin(key, CF_SEAL_KEY_BYTES, hex, len, NULL, &bin_len, NULL) != 0 ||
              bin_len != CF_SEAL_KEY_BYTES;
    sodium_memzero(hex, sizeof(hex));
    if (bad) {
        sodium_memzero(key, CF_SEAL_KEY_BYTES);
        cf_errf(err, errlen, "the secrets key %s does not hold 64 hexadecimal digits", path);
        return CF_EINVAL;
    }
    return 0;
}

static int create_key(const char *path, uint8_t key[CF_SEAL_KEY_BYTES], char *err, size_t errlen)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        cf_errf(err, errlen, "the secrets key path %s is too long", path);
        return CF_EINVAL;
    }
    randombytes_buf(key, CF_SEAL_KEY_BYTES);
    char hex[2 * CF_SEAL_KEY_BYTES + 2];
    sodium_bin2hex(hex, sizeof(hex) - 1, key, CF_SEAL_KEY_BYTES);
    size_t len = strlen(hex);
    hex[len++] = '\n';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = 0;
    if (fd < 0 || write(fd, hex, len) != (ssize_t)len || fsync(fd) != 0) {
        cf_errf(err, errlen, "cannot write the secrets key %s: %s", tmp, strerror(errno));
        rc = CF_EIO;
    }
    sodium_memzero(hex, sizeof(hex));
    if (fd >= 0)
        close(fd);
    /* link() refuses to replace a key another process created meanwhile: then that one wins. */
    if (!rc && link(tmp, path) != 0) {
        if (errno == EEXIST) {
            unlink(tmp);
            return read_key(path, key, err, errlen);
        }
        cf_errf(err, errlen, "cannot create the secrets key %s: %s", path, strerror(errno));
        rc = CF_EIO;
    }
    unlink(tmp);
    if (!rc) {
        char dir[4096];
        cf_strlcpy(dir, path, sizeof(dir));
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        else
            cf_strlcpy(dir, ".", sizeof(dir));
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        cf_log(CF_LOG_INFO,
               "created the secrets key %s (0600); keep a copy with the backups "
               "of the database, or give it as the systemd credential %s",
               path, CF_SEAL_CREDENTIAL_NAME);
    } else {
        sodium_memzero(key, CF_SEAL_KEY_BYTES);
    }
    return rc;
}

int cf_seal_key_load(const char *db_path, bool create, uint8_t key[CF_SEAL_KEY_BYTES], char *err,
                     size_t errlen)
{
    if (sodium_init() < 0) {
        cf_errf(err, errlen, "libsodium cannot be initialised");
        return CF_EINVAL;
    }
    const char *cred_dir = getenv("CREDENTIALS_DIRECTORY");
    char path[4096];
    if (cred_dir && *cred_dir) {
        snprintf(path, sizeof(path), "%s/%s", cred_dir, CF_SEAL_CREDENTIAL_NAME);
        int rc = read_key(path, key, err, errlen);
        if (rc != CF_ENOENT)
            return rc;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s.key", db_path) >= sizeof(path)) {
        cf_errf(err, errlen, "the database path %s is too long", db_path);
        return CF_EINVAL;
    }
    int rc = read_key(path, key, err, errlen);
    if (rc == CF_ENOENT && create)
        return create_key(path, key, err, errlen);
    if (rc == CF_ENOENT)
        cf_errf(err, errlen, "the secrets key %s does not exist", path);
    return rc;
}

char *cf_seal(const uint8_t key[CF_SEAL_KEY_BYTES], const char *plain, const uint8_t *aad,
              size_t aad_len)
{
    size_t plen = strlen(plain);
    size_t raw_len = NONCE_BYTES + plen + TAG_BYTES;
    uint8_t *raw = cf_xmalloc(raw_len);
    randombytes_buf(raw, NONCE_BYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(raw + NONCE_BYTES, &clen, (const uint8_t *)plain,
                                               plen, aad, aad_len, NULL, raw, key);
    size_t prefix = strlen(CF_SEAL_PREFIX);
    size_t b64_len = sodium_base64_encoded_len(raw_len, sodium_base64_VARIANT_ORIGINAL);
    char *out = cf_xmalloc(prefix + b64_len);
    memcpy(out, CF_SEAL_PREFIX, prefix);
    sodium_bin2base64(out + prefix, b64_len, raw, raw_len, sodium_base64_VARIANT_ORIGINAL);
    free(raw);
    return out;
}

int cf_seal_open(const uint8_t key[CF_SEAL_KEY_BYTES], const char *sealed, const uint8_t *aad,
                 size_t aad_len, char **plain)
{
    *plain = NULL;
    if (!cf_seal_is_sealed(sealed))
        return CF_EINVAL;
    const char *b64 = sealed + strlen(CF_SEAL_PREFIX);
    size_t b64_len = strlen(b64);
    size_t cap = b64_len / 4 * 3 + 3;
    uint8_t *raw = cf_xmalloc(cap);
    size_t raw_len = 0;
    if (sodium_base642bin(raw, cap, b64, b64_len, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        raw_len < NONCE_BYTES + TAG_BYTES) {
        free(raw);
        return CF_EINVAL;
    }
    size_t plen = raw_len - NONCE_BYTES - TAG_BYTES;
    char *out = cf_xmalloc(plen + 1);
    unsigned long long mlen = 0;
    int rc =
        crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)out, &mlen, NULL, raw + NONCE_BYTES,
                                                   raw_len - NONCE_BYTES, aad, aad_len, raw, key);
    free(raw);
    if (rc != 0 || memchr(out, '\0', (size_t)mlen)) {
        sodium_memzero(out, plen + 1);
        free(out);
        return CF_EINVAL;
    }
    out[mlen] = '\0';
    *plain = out;
    return 0;
}

void cf_seal_free_plain(char *plain)
{
    if (!plain)
        return;
    sodium_memzero(plain, strlen(plain));
    free(plain);
}
