/*
 * Error codes of certflow. Every function that can fail returns 0 on success or one of the negative
 * CF_E* codes below; detail for people goes into a caller-supplied buffer, never into global state.
 * The table is an X-macro so that the enum, cf_err_name() and cf_strerror() cannot drift apart.
 * Codes are never renumbered: new ones are appended at the end.
 */
#ifndef CERTFLOW_ERROR_H
#define CERTFLOW_ERROR_H

#define CF_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(EIO, -3, "input/output error")                                                              \
    XX(ENOENT, -4, "not found")                                                                    \
    XX(EEXIST, -5, "already exists")                                                               \
    XX(EPARSE, -6, "parse error")                                                                  \
    XX(ELIMIT, -7, "limit exceeded")                                                               \
    XX(EDB, -8, "database error")                                                                  \
    XX(EBUSY, -9, "database busy")                                                                 \
    XX(EFULL, -10, "disk full")                                                                    \
    XX(EEXPR, -11, "expression error")                                                             \
    XX(ETYPE, -12, "type mismatch")                                                                \
    XX(EPLUGIN, -13, "plug-in error")                                                              \
    XX(EABI, -14, "plug-in ABI mismatch")                                                          \
    XX(EINVALID, -15, "invalid process definition")                                                \
    XX(ESTATE, -16, "invalid state")                                                               \
    XX(ETIMEDOUT, -17, "timed out")                                                                \
    XX(EPERM, -18, "permission denied")                                                            \
    XX(EAUTH, -19, "authentication failed")                                                        \
    XX(ECONN, -20, "connection failed")                                                            \
    XX(ESCHEMA, -21, "database schema is newer than this program")                                 \
    XX(ECANCELED, -22, "canceled")

enum cf_errno {
#define CF__ERR_ENUM(name, code, text) CF_##name = (code),
    CF_ERRNO_MAP(CF__ERR_ENUM)
#undef CF__ERR_ENUM
};

/* "CF_EINVAL" for CF_EINVAL; "CF_EUNKNOWN" for a code not in the table. Never NULL. */
const char *cf_err_name(int err);
/* "invalid argument" for CF_EINVAL; "unknown error" for a code not in the table. Never NULL. */
const char *cf_strerror(int err);

#endif
