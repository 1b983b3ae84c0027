/* sniff.h — what an uploaded file is, decided from its bytes, and the names
 * it is shown and downloaded under. Pure functions: no I/O, no allocation
 * except into the caller's iy_buf.
 *
 * The content type of an attachment is never taken from the client: the
 * server sniffs the first bytes with media_sniff() and stores what it says.
 * Attachments are served with "X-Content-Type-Options: nosniff", so the type
 * stored here is the type the browser uses; media_sniff() therefore never
 * answers a type a browser would execute or render as a document with
 * scripts (text/html, image/svg+xml, text/xml, application/javascript...):
 * an HTML or SVG file is text/plain (or application/octet-stream). */
#ifndef IY_MEDIA_SNIFF_H
#define IY_MEDIA_SNIFF_H
#include <stddef.h>
#include <stdint.h>
#include "../base/buf.h"

#define MEDIA_SNIFF_LEN 512   /* bytes media_sniff() looks at; more are ignored */
#define MEDIA_NAME_MAX 200    /* bytes of a safe name, without the NUL */

/* The MIME type of a file whose first n bytes are head (n may be smaller
 * than MEDIA_SNIFF_LEN: the caller passes what it has; bytes past
 * MEDIA_SNIFF_LEN are ignored). A static string, never NULL, one of:
 *   image/jpeg image/png image/gif image/webp image/avif image/heic
 *   image/heif image/bmp application/pdf application/zip application/gzip
 *   video/mp4 video/quicktime video/webm video/x-matroska audio/mp4
 *   audio/mpeg audio/ogg audio/wav text/plain application/octet-stream
 * ISO BMFF files (ftyp box) are told apart by their brands: avif/avis (as
 * the major brand, or as a compatible brand of a generic mif1/msf1 file) is
 * AVIF; heic/heix/heim/heis/hevc/hevx is HEIC; other mif1/msf1 is HEIF;
 * M4A is audio/mp4, "qt" QuickTime, other known video brands video/mp4.
 * text/plain: the bytes are UTF-8 (a character cut by the end of the window
 * is allowed) without NUL, DEL, C1 controls or C0 controls other than
 * \t \n \r \f; an empty head is text/plain. Everything else is
 * application/octet-stream. */
const char *media_sniff(const uint8_t *head, size_t n);

/* 1 if a thumbnail can be made of a file of this MIME type (image/jpeg,
 * image/png, image/gif, image/webp: the loaders media/thumb.c allows),
 * else 0. mime may be NULL. */
int media_is_image(const char *mime);

/* A safe display and download name for the client-given file name in[0..n)
 * (UTF-8; invalid bytes are dropped), written NUL-terminated into out:
 *   - only what follows the last '/' or '\' is kept;
 *   - control characters (C0, DEL, C1), '"' and '\' are dropped, and so are
 *     the bidirectional formatting characters (U+061C, U+200E, U+200F,
 *     U+202A..U+202E, U+2066..U+2069) that can make "gpj.exe" look like a
 *     picture; other characters, the apostrophe included, are kept;
 *   - leading and trailing spaces and dots are trimmed (no ".hidden", no
 *     "..", no "name."), then it is cut to at most MEDIA_NAME_MAX bytes (and
 *     cap - 1) on a character boundary, and trimmed again;
 *   - an empty result is "file".
 * cap must be at least 1; MEDIA_NAME_MAX + 1 always holds the whole result.
 * Returns the length written (without the NUL). */
int media_safe_name(const char *in, size_t n, char *out, size_t cap);

/* Appends to out the value of a Content-Disposition header (RFC 6266, with
 * RFC 5987 / 8187 encoding) for the NUL-terminated UTF-8 name:
 *   attachment; filename="FALLBACK"; filename*=UTF-8''PERCENT-ENCODED
 * ("inline; ..." if inline_). FALLBACK is the name in printable ASCII:
 * every non-ASCII character, control, '"', '\' and '%' becomes '_' (a '%'
 * could be percent-decoded by some agents, RFC 6266 appendix D), so nothing
 * in name can end the quoted string. PERCENT-ENCODED keeps every byte of
 * name, percent-encoding all but RFC 5987's attr-char. name should come from
 * media_safe_name(); any bytes are encoded safely all the same. */
void media_content_disposition(iy_buf *out, const char *name, int inline_);

#endif
