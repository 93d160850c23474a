/*
 * Internals of the store shared by its files (store.c for the engine's tables, and one file per
 * further group of tables). Only files in store/ include this; everyone else uses store.h.
 *
 * Statements: cf__store_stmt() prepares a statement on first use and caches it for the life of
 * the connection, keyed by the address of its SQL text, which must therefore be a string
 * literal or otherwise static. The statement comes back reset, with bindings cleared.
 */
#ifndef CF_STORE_INTERNAL_H
#define CF_STORE_INTERNAL_H

#include <sqlite3.h>

#include "base/imap.h"
#include "store/store.h"

sqlite3 *cf__store_db(struct cf_store *s);
sqlite3_stmt *cf__store_stmt(struct cf_store *s, const char *static_sql);
/* SQLite result code to CF_E*: FULL → CF_EFULL, BUSY/LOCKED → CF_EBUSY, CONSTRAINT → CF_EEXIST,
 * NOMEM → CF_ENOMEM, IOERR → CF_EIO, others CF_EDB. */
int cf__store_map_rc(int rc);
/* Steps a statement that returns no rows to its end, then resets it. */
int cf__store_run(struct cf_store *s, sqlite3_stmt *p);
/* Steps once: 0 with a row to read, CF_ENOENT when there is none, or an error. */
int cf__store_one_row(struct cf_store *s, sqlite3_stmt *p);
void cf__store_bind_text(sqlite3_stmt *p, int i, const char *t);
/* Binds 0 as NULL. */
void cf__store_bind_id(sqlite3_stmt *p, int i, int64_t id);
char *cf__store_col_text(sqlite3_stmt *p, int i);
/* Rows of process_definition and process_instance, read from statements that select the columns
 * in store.c's order (DEF_COLS, then xml when with_xml; INST_COLS). */
void cf__store_read_def(sqlite3_stmt *p, struct cf_def_row *r, bool with_xml);
void cf__store_read_inst(sqlite3_stmt *p, struct cf_inst_row *r);
const char *cf__store_col_ctext(sqlite3_stmt *p, int i);

#endif
