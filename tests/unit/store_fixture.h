/* store_fixture.h — a throw-away store in a temp directory for the store's
 * unit tests: fresh() opens one, reopen() closes and opens it again (the
 * restart case), done() closes it and removes the directory. Include after
 * t.h. */
#ifndef IY_STORE_FIXTURE_H
#define IY_STORE_FIXTURE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "store/store.h"

static char dir[64];

static store *fresh(void)
{
    strcpy(dir, "/tmp/iyagi_store_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    store *s = NULL;
    CHECK_EQ(store_open(dir, 0, &s), 0);
    return s;
}

static inline store *reopen(store *s)
{
    store_free(s);
    s = NULL;
    CHECK_EQ(store_open(dir, 0, &s), 0);
    return s;
}

static void done(store *s)
{
    store_free(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static inline int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mkuser(store *s, const char *name)
{
    iy_user u;
    CHECK_EQ(store_user_create(s, name, name, "$argon2id$hash", &u), 0);
    return u.id;
}

#endif
