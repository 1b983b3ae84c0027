/* admin.c — `iyagid admin`: offline bulk setup of users, sessions and groups.
 *
 * Used by the benchmark (bench/run.sh) to prepare thousands of users without
 * thousands of Argon2id logins. The store is opened directly (for the
 * embedded store the server must not be running: RocksDB's LOCK refuses a
 * second process; a PostgreSQL store may be shared), so every write goes
 * through the same store functions the server uses, with the same encodings:
 * what the server later reads is exactly what signup and login would have
 * written, except that all users share one password hash (computed once,
 * with the server's Argon2id parameters and a random salt). That is honest
 * for a benchmark because login is not what it measures; it is documented in
 * docs/BENCHMARKS.md. */
#include "admin.h"
#include "admin_backup.h"
#include "admin_fill.h"
#include "../chat/auth.h"
#include "../model/rules.h"
#include "../store/store.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/limits.h"
#include <argon2.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

/* The server's parameters (auth.c): t=2, m=19 MiB, p=1, 16-byte salt, 32-byte hash. */
#define ADMIN_ARGON2_T 2
#define ADMIN_ARGON2_M_KIB 19456
#define ADMIN_ARGON2_P 1

static void usage(FILE *f)
{
    fprintf(f,
            "usage: iyagid admin backup [--data DIR] [--blob-dir DIR] OUT   (admin backup --help)\n"
            "       iyagid admin restore BACKUP [--data DIR] [--blob-dir DIR] [--force]\n"
            "       iyagid admin create-users --data DIR [--store URL] --count N --prefix P --out FILE\n"
            "                                 [--password PW] [--groups G --group-size M]\n"
            "  Creates users P0..P{N-1} (all with password PW, default \"benchpass\"; one\n"
            "  Argon2id hash shared by all), one session each, and writes\n"
            "  \"user_id username token\" lines to FILE; with --groups, G groups of M\n"
            "  members (group g: users g*M..g*M+M-1) and \"group channel_id member_id...\"\n"
            "  lines. The server must not be running on DIR.\n"
            "  --messages N (with --groups): also N made-up messages round robin over the\n"
            "  groups, user P0 a member of every group (the searcher of the search\n"
            "  benchmark), and \"query CLASS TEXT\" lines for it.\n");
}

static int parse_count(const char *name, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "iyagid admin: %s must be an integer from %ld to %ld\n", name, lo, hi);
        return IY_EINVAL;
    }
    *out = x;
    return 0;
}

static int valid_prefix(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > IY_USERNAME_MAX - 7) return 0; /* room for up to 7 digits */
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int create_users(const char *dir, const char *url, long count, const char *prefix, const char *out_path,
                        const char *password, long groups, long group_size, long messages)
{
    uint64_t *gids = iy_calloc((size_t)groups + 1, sizeof *gids);
    uint64_t (*gmem)[IY_GROUP_MAX] = iy_calloc((size_t)groups + 1, sizeof *gmem);
    int rc = 1;
    store *s = NULL;
    FILE *out = NULL;
    uint64_t *ids = iy_calloc((size_t)count, sizeof *ids);
    char pwhash[256];
    uint8_t salt[16];

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "iyagid admin: cannot create %s: %s\n", dir, strerror(errno));
        goto err;
    }
    if (getrandom(salt, sizeof salt, 0) != (ssize_t)sizeof salt) {
        fprintf(stderr, "iyagid admin: getrandom failed\n");
        goto err;
    }
    /* The one Argon2id hash of this run, shared by every user created. */
    if (argon2id_hash_encoded(ADMIN_ARGON2_T, ADMIN_ARGON2_M_KIB, ADMIN_ARGON2_P, password,
                              strlen(password), salt, sizeof salt, 32, pwhash,
                              sizeof pwhash) != ARGON2_OK) {
        fprintf(stderr, "iyagid admin: argon2id failed\n");
        goto err;
    }
    store_config sc = { url ? url : dir, "admin", 0, 0, 0 };
    if (store_open(&sc, &s) != 0) {
        fprintf(stderr, "iyagid admin: cannot open the store %s (is iyagid running on it?)\n", url ? "" : dir);
        goto err;
    }
    if (!(out = fopen(out_path, "w"))) {
        fprintf(stderr, "iyagid admin: cannot write %s: %s\n", out_path, strerror(errno));
        goto err;
    }
    for (long i = 0; i < count; i++) {
        char name[IY_USERNAME_MAX + 1];
        iy_user u;
        char token[44];
        uint8_t hash[32];
        snprintf(name, sizeof name, "%s%ld", prefix, i);
        int e = store_user_create(s, name, name, pwhash, &u);
        if (e == IY_ECONFLICT) {
            fprintf(stderr, "iyagid admin: user %s already exists (use a new --prefix or data dir)\n", name);
            goto err;
        }
        if (e != 0) {
            fprintf(stderr, "iyagid admin: storing user %s failed (%s)\n", name, iy_err_code(e));
            goto err;
        }
        auth_token_new(token, hash);
        if ((e = store_session_create(s, hash, u.id, "bench")) != 0) {
            fprintf(stderr, "iyagid admin: storing a session failed (%s)\n", iy_err_code(e));
            goto err;
        }
        ids[i] = u.id;
        fprintf(out, "%llu %s %s\n", (unsigned long long)u.id, name, token);
    }
    for (long g = 0; g < groups; g++) {
        iy_channel ch;
        char gname[64];
        snprintf(gname, sizeof gname, "%sgroup%ld", prefix, g);
        uint64_t *members = gmem[g];
        memcpy(members, ids + g * group_size, (size_t)group_size * sizeof *members);
        if (messages && g > 0) members[group_size - 1] = ids[0];   /* the searcher is in every group */
        uint64_t sorted[IY_GROUP_MAX];
        uint32_t n = 0;
        int e = rules_group_members(members[0], gname, members, (size_t)group_size, sorted, &n);
        if (e == 0) e = store_group_create(s, members[0], gname, sorted, n, &ch);
        if (e != 0) {
            fprintf(stderr, "iyagid admin: creating group %ld failed (%s)\n", g, iy_err_code(e));
            goto err;
        }
        gids[g] = ch.id;
        fprintf(out, "group %llu", (unsigned long long)ch.id);
        for (long k = 0; k < group_size; k++) fprintf(out, " %llu", (unsigned long long)members[k]);
        fputc('\n', out);
    }
    if (messages && admin_fill(s, out, gids, (const uint64_t (*)[IY_GROUP_MAX])gmem, groups, group_size, messages))
        goto err;
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(stderr, "iyagid admin: writing %s failed\n", out_path);
        goto err;
    }
    rc = 0;
err:
    if (out && fclose(out) != 0) rc = 1;
    store_free(s);
    iy_free(ids);
    iy_free(gids);
    iy_free(gmem);
    return rc;
}

int admin_main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "backup")) return admin_backup_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "restore")) return admin_restore_main(argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "create-users") != 0) {
        usage(argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr);
        return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    const char *dir = NULL, *url = NULL, *prefix = NULL, *out = NULL, *password = "benchpass";
    long count = -1, groups = 0, group_size = 0, messages = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "iyagid admin: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--data")) dir = v;
        else if (!strcmp(a, "--store")) url = v;
        else if (!strcmp(a, "--prefix")) prefix = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--password")) password = v;
        else if (!strcmp(a, "--count")) {
            if (parse_count(a, v, 1, 9999999, &count)) return 2;
        } else if (!strcmp(a, "--groups")) {
            if (parse_count(a, v, 0, 9999999, &groups)) return 2;
        } else if (!strcmp(a, "--messages")) {
            if (parse_count(a, v, 0, 100000000, &messages)) return 2;
        } else if (!strcmp(a, "--group-size")) {
            if (parse_count(a, v, 2, IY_GROUP_MAX, &group_size)) return 2;
        } else {
            fprintf(stderr, "iyagid admin: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir || !prefix || !out || count < 1) {
        fprintf(stderr, "iyagid admin: --data, --count, --prefix and --out are required\n");
        usage(stderr);
        return 2;
    }
    if (!valid_prefix(prefix)) {
        fprintf(stderr, "iyagid admin: --prefix must be 1-25 of [a-z0-9_.-]\n");
        return 2;
    }
    size_t pwlen = strlen(password);
    if (pwlen < IY_PASSWORD_MIN || pwlen > IY_PASSWORD_MAX) {
        fprintf(stderr, "iyagid admin: --password must be 8 to 1024 bytes\n");
        return 2;
    }
    if (groups > 0 && (group_size < 2 || groups * group_size > count)) {
        fprintf(stderr, "iyagid admin: --groups G needs --group-size M (2-100) with G*M <= --count\n");
        return 2;
    }
    if (messages > 0 && groups < 1) {
        fprintf(stderr, "iyagid admin: --messages needs --groups\n");
        return 2;
    }
    return create_users(dir, url, count, prefix, out, password, groups, group_size, messages);
}
