/*
 * Secrets at rest (reliability.md §3.3): values that a plug-in's schema or a connector marks
 * secret (passwords, shared secrets, HMAC keys) are stored sealed, never in clear, and are opened
 * only into the memory of the call that uses them, which wipes them afterwards.
 *
 * Sealing is XChaCha20-Poly1305 (libsodium's IETF AEAD, a random 192-bit nonce per value) with a
 * 256-bit key. The associated data names the row the value belongs to (for a task parameter:
 * tenant, process, activity, parameter), so a sealed value copied into another row does not
 * open. A sealed value is text: "cfsealed:1:" followed by Base64 of nonce, ciphertext and tag.
 * Values without that prefix are clear text (stored before sealing existed, or not secret).
 *
 * The key, first match wins:
 *   1. the systemd credential CF_SEAL_CREDENTIAL_NAME ($CREDENTIALS_DIRECTORY/certflow-secrets-key,
 *      e.g. LoadCredentialEncrypted=, which systemd can seal to the TPM);
 *   2. the file "<database>.key" next to the database, created (0600, 32 random bytes as 64 hex
 *      digits, written to a temporary name, fsync'ed and renamed) the first time a value is
 *      sealed.
 * Either holds 64 hex digits (a trailing newline is allowed). As with the embedded CA's default
 * passphrase file, the default protects copies of the database (backups, a leaked file) but not
 * against someone who can read the whole data directory; the credential separates the two.
 * Losing the key loses the sealed values (they must be set again), nothing else.
 *
 * Thread-safety: the functions keep no state; the caller (struct cf_store) caches the key.
 */
#ifndef CF_STORE_SEAL_H
#define CF_STORE_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CF_SEAL_PREFIX "cfsealed:1:"
#define CF_SEAL_CREDENTIAL_NAME "certflow-secrets-key"
#define CF_SEAL_KEY_BYTES 32

/* Whether `text` is a sealed value. */
bool cf_seal_is_sealed(const char *text);

/* Loads the key for the database at `db_path` (see above) into `key`. With `create`, a missing
 * key file is created; without, CF_ENOENT when there is none. Other failures: a CF_E* code with
 * the file named in `err` (never the key). */
int cf_seal_key_load(const char *db_path, bool create, uint8_t key[CF_SEAL_KEY_BYTES], char *err,
                     size_t errlen);

/* Seals `plain` bound to `aad` (aad_len bytes). Returns the sealed text (free()), never NULL. */
char *cf_seal(const uint8_t key[CF_SEAL_KEY_BYTES], const char *plain, const uint8_t *aad,
              size_t aad_len);

/* Opens a sealed value into *plain (free with cf_seal_free_plain()). CF_EINVAL when it is not a
 * sealed value, was made with another key or for another row, or was altered. */
int cf_seal_open(const uint8_t key[CF_SEAL_KEY_BYTES], const char *sealed, const uint8_t *aad,
                 size_t aad_len, char **plain);

/* Wipes and frees an opened value. NULL is a no-op. */
void cf_seal_free_plain(char *plain);

#endif
