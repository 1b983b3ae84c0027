/* log.c — timestamped log lines on stderr.
 *
 * Lines carry strings that users chose (usernames, device names, node
 * names from the bus): every control byte and the backslash are written
 * escaped, so that no input can end a line, forge the next one, or send
 * escape sequences to an operator's terminal. */
#include "log.h"
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

size_t iy_log_escape(char *out, size_t cap, const char *in)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (!cap) return 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char e[4];
        size_t k = 0;
        if (*p == '\\') {
            e[k++] = '\\';
            e[k++] = '\\';
        } else if (*p < 0x20 || *p == 0x7f) {
            e[k++] = '\\';
            e[k++] = 'x';
            e[k++] = hex[*p >> 4];
            e[k++] = hex[*p & 15];
        } else {
            e[k++] = (char)*p;
        }
        if (n + k >= cap) break;   /* whole escapes only */
        for (size_t i = 0; i < k; i++) out[n++] = e[i];
    }
    out[n] = '\0';
    return n;
}

void iy_log(const char *fmt, ...)
{
    char msg[1024], line[64 + 4 * sizeof msg];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ ", ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    iy_log_escape(line + n, sizeof line - (size_t)n, msg);
    fprintf(stderr, "%s\n", line);
}
