/* admin.h — administration commands of iyagid (`iyagid admin ...`).
 *
 *   iyagid admin backup [--data DIR] [--blob-dir DIR] OUT
 *   iyagid admin restore BACKUP [--data DIR] [--blob-dir DIR] [--force]
 *
 * back up and restore an embedded store (admin_backup.c, backup.h); a
 * backup of a running server's directory is taken by that server.
 * create-users opens the store directly, so the server must NOT be running
 * on the same data directory (RocksDB's lock file refuses a second opener).
 *
 *   iyagid admin create-users --data DIR --count N --prefix P --out FILE
 *                             [--password PW] [--groups G --group-size M]
 *
 * creates users P0..P{N-1} and one session (device "bench") each, and writes
 * one line "user_id username token" per user to FILE; with --groups, also G
 * groups of M members (group g: users g*M .. g*M+M-1, owner the first) and
 * one line "group channel_id member_id..." per group. This is the benchmark's
 * fast path (bench/, docs/BENCHMARKS.md): ONE Argon2id hash is computed and
 * shared by every user (they all have the same password), so setting up
 * 20,000 users costs one hash instead of 20,000 logins. Tokens are real:
 * made by auth_token_new and stored as their SHA-256 like any login's. */
#ifndef IY_ADMIN_H
#define IY_ADMIN_H

/* argv[0] is "admin". Returns the process exit code: 0 on success, 1 on a
 * failure (reported on stderr), 2 on a usage error. */
int admin_main(int argc, char **argv);

#endif
