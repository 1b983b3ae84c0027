/* admin_backup.h — `iyagid admin backup` and `iyagid admin restore`
 * (admin_backup.c; the work itself is backup.h's). */
#ifndef IY_ADMIN_BACKUP_H
#define IY_ADMIN_BACKUP_H

/* argv[0] is "backup" / "restore". The process exit code: 0 done, 1 failed
 * (said on stderr), 2 a usage error (or a PostgreSQL store: pg_dump's job). */
int admin_backup_main(int argc, char **argv);
int admin_restore_main(int argc, char **argv);

#endif
