/* version.h — what this binary is: the release and the commit it was built
 * from (the Makefile passes -DIYAGI_COMMIT="<short hash>", or "unknown"). */
#ifndef IY_VERSION_H
#define IY_VERSION_H

#define IYAGI_VERSION "0.14.0"
#ifndef IYAGI_COMMIT
#define IYAGI_COMMIT "unknown"
#endif

#endif
