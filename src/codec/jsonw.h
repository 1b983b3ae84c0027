/* jsonw.h — a small JSON writer that appends to an iy_buf.
 *
 * The protocol encoders (proto.c) and the HTTP API build their answers with
 * these few calls instead of a DOM: the output is written once, straight into
 * the buffer that goes on the wire. The writer does not track structure;
 * callers write the punctuation ('{', ',', ']') themselves.
 *
 * Strings are escaped so that the output is valid JSON and also safe to
 * embed in JavaScript: '"', '\\', every byte below 0x20, and U+2028/U+2029
 * are escaped; every other byte is copied as it is. Input strings must be
 * valid UTF-8 (the codec validates every string it accepts). No function
 * here fails: growth aborts on out-of-memory like every iy_buf append. */
#ifndef IY_JSONW_H
#define IY_JSONW_H
#include <stddef.h>
#include <stdint.h>
#include "../base/buf.h"

/* Appends s[0..n) as a JSON string literal, quotes included. s may contain
 * U+0000 (written as \u0000). */
void jw_str(iy_buf *b, const char *s, size_t n);

/* jw_str(b, s, strlen(s)). */
void jw_cstr(iy_buf *b, const char *s);

/* Appends an id as a JSON string of decimal digits: "7351042311118848001".
 * Ids travel as strings because JavaScript numbers lose precision past 2^53. */
void jw_id(iy_buf *b, uint64_t v);

/* Appends v as a JSON number. */
void jw_u64(iy_buf *b, uint64_t v);
void jw_i64(iy_buf *b, int64_t v);

/* Appends "key": — key is a trusted literal of the program and is not escaped. */
void jw_key(iy_buf *b, const char *key);

#endif
