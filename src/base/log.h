/* log.h — one line per event worth knowing, to stderr.
 * Thread-safe (each line is written with one fprintf). Control bytes and
 * backslashes in the message are escaped (\x0a, \\): a line is one line. */
#ifndef IY_LOG_H
#define IY_LOG_H
#include <stddef.h>

void iy_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* in, escaped as iy_log writes it, into out (cap bytes, always terminated;
 * cut at a whole escape). Returns the length written. */
size_t iy_log_escape(char *out, size_t cap, const char *in);

#endif
