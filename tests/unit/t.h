/* t.h — a minimal unit-test harness: CHECK() records failures without
 * stopping, T_DONE() prints "N passed, N failed" and sets the exit status. */
#ifndef IY_T_H
#define IY_T_H
#include <stdio.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond) do { \
    if (cond) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_EQ(a, b) do { \
    long long _a = (long long)(a), _b = (long long)(b); \
    if (_a == _b) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
                             __FILE__, __LINE__, #a, _a, #b, _b); } \
} while (0)

#define CHECK_MEM(p, n, lit) CHECK((n) == sizeof(lit) - 1 && memcmp((p), (lit), (n)) == 0)

#define T_DONE(name) ( \
    printf("%s: %d passed, %d failed\n", (name), t_pass, t_fail), t_fail ? 1 : 0)

#endif
