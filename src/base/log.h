/* log.h — one line per event worth knowing, to stderr; and the access log.
 *
 * Every line is written with one write(2), so lines of concurrent threads
 * never interleave. Control bytes and backslashes in a message are escaped
 * (\x0a, \\) in text lines and JSON-escaped in JSON lines: a line is one
 * line, whatever a user chose as a name.
 *
 * Never log a token, a password, a message's text, a query string or a
 * request body: log ids, usernames, addresses, error codes. */
#ifndef IY_LOG_H
#define IY_LOG_H
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

enum iy_log_level { IY_LOG_ERROR = 0, IY_LOG_WARN = 1, IY_LOG_INFO = 2, IY_LOG_DEBUG = 3 };
enum iy_log_format { IY_LOG_TEXT = 0, IY_LOG_JSON = 1 };

/* Sets the threshold (lines above it are dropped) and the format. Call
 * before any thread starts; defaults: info, text. */
void iy_log_setup(int level, int format);

/* 0 and *out for "error", "warn", "info", "debug" (or "text", "json"), else -1. */
int iy_log_level_parse(const char *s, int *out);
int iy_log_format_parse(const char *s, int *out);

/* 1 if a line of this level would be written (skip building costly ones). */
int iy_log_enabled(int level);

/* One line at a level: "2026-11-27T05:13:05.123Z info msg", or
 * {"ts":"...","level":"info","msg":"..."}. */
void iy_logl(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define iy_log_error(...) iy_logl(IY_LOG_ERROR, __VA_ARGS__)
#define iy_log_warn(...) iy_logl(IY_LOG_WARN, __VA_ARGS__)
#define iy_log_info(...) iy_logl(IY_LOG_INFO, __VA_ARGS__)
#define iy_log_debug(...) iy_logl(IY_LOG_DEBUG, __VA_ARGS__)
#define iy_log(...) iy_logl(IY_LOG_INFO, __VA_ARGS__)

/* A budget for lines a client can cause at will (auth failures): at most
 * `per_s` lines a second pass; the first refused one of a second is
 * replaced by a line saying how many went unlogged before. Zero-initialise;
 * any thread. */
typedef struct iy_log_budget {
    const char *what;           /* names the lines in the summary ("auth failures") */
    unsigned per_s;
    _Atomic int64_t second;     /* the second the count is for */
    _Atomic unsigned used;
    _Atomic uint64_t dropped;   /* refused since the last summary */
} iy_log_budget;

/* 1 if one more line may be written now, else 0 (counted). */
int iy_log_allow(iy_log_budget *b);

/* The budget of every auth-failure line (logins, tokens, scrapes): 20 a second. */
extern iy_log_budget iy_log_auth_budget;

/* in, escaped as a text line carries it, into out (cap bytes, always
 * terminated; cut at a whole escape). Returns the length written. */
size_t iy_log_escape(char *out, size_t cap, const char *in);

/* in as the inside of a JSON string (no quotes), as iy_log_escape. */
size_t iy_log_json_escape(char *out, size_t cap, const char *in);

/* ---- the access log ---- */

/* "off" (default), "stderr" or a file path, opened for appending (created
 * 0600). 0, or -errno (the file cannot be opened). Before threads start. */
int iy_access_log_open(const char *where);
int iy_access_log_on(void);

/* Opens the access log's file again (after logrotate moved it): the new
 * file takes the old descriptor's number (dup2), so writers on other
 * threads never see a closed descriptor. 0, 1 when there is no file to
 * reopen (off or stderr), or -errno (the old file stays). */
int iy_access_log_reopen(void);

/* One HTTP request: client address (text), method, route template (never
 * the raw path: no ids, no query), status, bytes sent, duration. */
void iy_access_http(const char *client, const char *method, const char *route, int status,
                    uint64_t bytes, uint64_t dur_us);

/* A WebSocket's open (code 0) or close (its close code, 1006 if none). */
void iy_access_ws(const char *client, const char *event, int code, uint64_t dur_us);

#endif
