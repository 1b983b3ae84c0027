/* log.h — one line per event worth knowing, to stderr.
 * Thread-safe (each line is written with one fprintf). */
#ifndef IY_LOG_H
#define IY_LOG_H

void iy_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
