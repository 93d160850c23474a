/*
 * The CA side of the certflow CLI: `certflow ca init|show`, `certflow templates
 * add|update|list|show|remove`, and the "ca" service of the engine sessions that `run`,
 * `resume`, `retry` and `correlate` open on a database file.
 */
#ifndef CF_CLI_CA_CMDS_H
#define CF_CLI_CA_CMDS_H

#include <stdbool.h>

#include "ca/service.h"

/* argv[0] is "ca" or "templates". Return the process exit code (0, 1 failure, 2 usage). */
int cf_cli_ca(int argc, char **argv);
int cf_cli_templates(int argc, char **argv);

/*
 * For an engine session on `db_path`: makes sure the database has the tenant "default" with the
 * template "default" (embedded CA, default procedure), as certflowd's first start does, and
 * offers the "ca" service with the embedded CA in the "ca" folder next to the database (for a
 * throw-away database, `temp_db`, in "<db_path>-ca", removed by cf_cli_ca_remove_temp()).
 * Returns NULL, after a warning on stderr, when that cannot be done; the session then runs
 * without a CA and certificate tasks fail with an incident that says so.
 */
struct cf_ca_svc *cf_cli_ca_attach(struct cf_engine *e, const char *db_path, bool temp_db);
/* Call right after cf_engine_close(), before the loop runs again (ca/service.h). */
void cf_cli_ca_detach(struct cf_ca_svc *svc);
/* Removes the CA folder of a throw-away database, once the loop has run down. */
void cf_cli_ca_remove_temp(const char *db_path);

#endif
