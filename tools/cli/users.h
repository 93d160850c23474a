/*
 * `certflow user ...`: the users of certflowd (HTTP Basic passwords, client certificate
 * mappings, tenants and process permissions), edited directly in the database file.
 */
#ifndef CF_CLI_USERS_H
#define CF_CLI_USERS_H

/* argv[0] is "user". Returns the process exit code (0, 1 failure, 2 usage). */
int cf_cli_user(int argc, char **argv);

#endif
