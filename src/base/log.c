/* log.c — timestamped log lines and access log lines.
 *
 * Lines carry strings that users chose (usernames, device names, node
 * names from the bus): every control byte and the backslash are written
 * escaped (JSON lines: JSON escapes), so that no input can end a line,
 * forge the next one, or send escape sequences to an operator's terminal.
 *
 * Each line is built in a stack buffer and written with one write(2) on
 * an O_APPEND descriptor (stderr, or the access log file): POSIX makes such
 * writes of a regular file atomic with respect to each other, and a pipe
 * keeps writes up to PIPE_BUF (4 KiB) whole, which a line never passes.
 * No lock, no allocation, no shared buffer. */
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_level = IY_LOG_INFO;
static int log_format = IY_LOG_TEXT;
static int access_fd = -1;
static char access_path[4096];          /* the access log's file, for reopening */

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void iy_log_setup(int level, int format)
{
    log_level = level;
    log_format = format;
}

int iy_log_level_parse(const char *s, int *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, level_names[i])) { *out = i; return 0; }
    return -1;
}

int iy_log_format_parse(const char *s, int *out)
{
    if (!strcmp(s, "text")) *out = IY_LOG_TEXT;
    else if (!strcmp(s, "json")) *out = IY_LOG_JSON;
    else return -1;
    return 0;
}

int iy_log_enabled(int level) { return level <= log_level; }

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

/* Bytes that are not valid UTF-8 would make the line invalid JSON: they
 * are written as U+FFFD, one per byte. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 && c >= 0xc2 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 && c <= 0xf4 ? 4 : 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))) return 0;
    if (n == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))) return 0;
    return n;
}

size_t iy_log_json_escape(char *out, size_t cap, const char *in)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (!cap) return 0;
    for (const unsigned char *p = (const unsigned char *)in; *p;) {
        char e[8];
        size_t k = 0, adv = 1;
        if (*p == '"' || *p == '\\') {
            e[k++] = '\\';
            e[k++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            memcpy(e, "\\u00", 4);
            k = 4;
            e[k++] = hex[*p >> 4];
            e[k++] = hex[*p & 15];
        } else if (*p < 0x80) {
            e[k++] = (char)*p;
        } else if ((adv = utf8_len(p)) != 0) {
            memcpy(e, p, adv);
            k = adv;
        } else {
            adv = 1;
            memcpy(e, "\xef\xbf\xbd", 3);
            k = 3;
        }
        if (n + k >= cap) break;
        memcpy(out + n, e, k);
        n += k;
        p += adv;
    }
    out[n] = '\0';
    return n;
}

/* "2026-11-27T05:13:05.123Z" into out (at least 32 bytes). */
static int timestamp(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(out + n, cap - (size_t)n, ".%03ldZ", ts.tv_nsec / 1000000);
    return n;
}

static void write_line(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;   /* nowhere to report it */
        p += w;
        n -= (size_t)w;
    }
}

void iy_logl(int level, const char *fmt, ...)
{
    if (level > log_level) return;
    if (level < 0) level = 0;
    char msg[1024], line[96 + 6 * sizeof msg], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof ts);
    size_t n;
    if (log_format == IY_LOG_JSON) {
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[level]);
        n += iy_log_json_escape(line + n, sizeof line - n - 3, msg);
        memcpy(line + n, "\"}\n", 3);
        n += 3;
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s %s ", ts, level_names[level]);
        n += iy_log_escape(line + n, sizeof line - n - 1, msg);
        line[n++] = '\n';
    }
    write_line(2, line, n);
}

iy_log_budget iy_log_auth_budget = { "auth failures", 20, 0, 0, 0 };

int iy_log_allow(iy_log_budget *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = ts.tv_sec, was = atomic_load(&b->second);
    if (now != was && atomic_compare_exchange_strong(&b->second, &was, now)) {
        atomic_store(&b->used, 0);
        uint64_t d = atomic_exchange(&b->dropped, 0);
        if (d) iy_log_warn("%llu %s not logged (over %u a second)",
                           (unsigned long long)d, b->what, b->per_s);
    }
    if (atomic_fetch_add(&b->used, 1) < b->per_s) return 1;
    atomic_fetch_add(&b->dropped, 1);
    return 0;
}

/* ---- access log ---- */

int iy_access_log_open(const char *where)
{
    if (!strcmp(where, "off")) {
        access_fd = -1;
        return 0;
    }
    if (!strcmp(where, "stderr")) {
        access_fd = 2;
        return 0;
    }
    int fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    access_fd = fd;
    snprintf(access_path, sizeof access_path, "%s", where);
    return 0;
}

int iy_access_log_on(void) { return access_fd >= 0; }

int iy_access_log_reopen(void)
{
    if (access_fd <= 2 || !access_path[0]) return 1;   /* no file: nothing to reopen */
    int fd = open(access_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    int rc = dup3(fd, access_fd, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void iy_access_http(const char *client, const char *method, const char *route, int status,
                    uint64_t bytes, uint64_t dur_us)
{
    if (access_fd < 0) return;
    char line[512], ts[40];
    timestamp(ts, sizeof ts);
    int n;
    /* client, method and route come from fixed tables or net_addr_text:
     * no escaping needed (no quote, no control byte). */
    if (log_format == IY_LOG_JSON)
        n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"access\",\"kind\":\"http\",\"client\":\"%s\","
                     "\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,\"bytes\":%llu,\"duration_us\":%llu}\n",
                     ts, client, method, route, status, (unsigned long long)bytes, (unsigned long long)dur_us);
    else
        n = snprintf(line, sizeof line, "%s access http %s %s %s %d %llu %lluus\n", ts, client, method, route,
                     status, (unsigned long long)bytes, (unsigned long long)dur_us);
    if (n > 0) write_line(access_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void iy_access_ws(const char *client, const char *event, int code, uint64_t dur_us)
{
    if (access_fd < 0) return;
    char line[384], ts[40];
    timestamp(ts, sizeof ts);
    int n;
    if (log_format == IY_LOG_JSON)
        n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"access\",\"kind\":\"ws\",\"client\":\"%s\","
                     "\"event\":\"%s\",\"code\":%d,\"duration_us\":%llu}\n",
                     ts, client, event, code, (unsigned long long)dur_us);
    else
        n = snprintf(line, sizeof line, "%s access ws %s %s %d %lluus\n", ts, client, event, code,
                     (unsigned long long)dur_us);
    if (n > 0) write_line(access_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
