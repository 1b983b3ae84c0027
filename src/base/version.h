/* version.h — what this build is: IYAGI_VERSION (the release), IYAGI_COMMIT
 * (the git commit it was built from; the Makefile passes it). */
#ifndef IY_VERSION_H
#define IY_VERSION_H

#define IYAGI_VERSION "0.14.0"
extern const char iyagi_commit[];   /* build/VARIANT/gen/commit.c, written by the Makefile */
#define IYAGI_COMMIT iyagi_commit

#endif
