/*
 * The schema migrations compiled into the engine from schema/NNN_name.sql (see
 * tools/embed-migrations.cmake). The array ends with an entry whose name is NULL.
 */
#ifndef CF_STORE_MIGRATIONS_H
#define CF_STORE_MIGRATIONS_H

struct cf__migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct cf__migration cf__migrations[];

#endif
