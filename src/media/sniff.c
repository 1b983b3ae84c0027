/* sniff.c — content types from magic numbers, safe file names and the
 * Content-Disposition value (sniff.h).
 *
 * The sniffer is a list of exact signatures, checked in order, then the
 * text test. It errs towards application/octet-stream: a file it cannot
 * name is downloaded, never rendered. Signatures short enough to occur in
 * ordinary text (BMP's "BM", MPEG audio's frame sync) are checked further
 * (BMP's DIB header size, the MPEG header's bitrate and rate fields) so a
 * text file starting "BMW" stays text. */
#include "sniff.h"
#include <string.h>
#include "../base/utf8.h"

/* ---- media_sniff ---- */

static int at(const uint8_t *h, size_t n, size_t off, const char *magic, size_t len)
{
    return n >= off + len && memcmp(h + off, magic, len) == 0;
}

#define AT(off, lit) at(head, n, (off), (lit), sizeof(lit) - 1)

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static int brand_in(const uint8_t *b, const char *const *list)
{
    for (; *list; list++)
        if (memcmp(b, *list, 4) == 0) return 1;
    return 0;
}

static const char *const avif_brands[] = { "avif", "avis", NULL };
static const char *const heic_brands[] = { "heic", "heix", "heim", "heis", "hevc", "hevx", NULL };
static const char *const heif_brands[] = { "mif1", "msf1", NULL };
static const char *const mp4_brands[] = {
    "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "mp41", "mp42", "mp71", "avc1",
    "M4V ", "M4VH", "M4VP", "dash", "MSNV", "f4v ", "NDAS", NULL
};

/* An ISO BMFF file: "ftyp" box first: size(4) "ftyp" major(4) minor(4)
 * compatible(4)*. The major brand decides, except for the generic HEIF
 * brands, where the compatible brands say which codec the images use. */
static const char *sniff_bmff(const uint8_t *head, size_t n)
{
    if (n < 16 || !AT(4, "ftyp")) return NULL;
    uint32_t size = be32(head);
    if (size < 16 || size % 4) return NULL;
    size_t end = size < n ? size : n;
    const uint8_t *major = head + 8;
    if (brand_in(major, avif_brands)) return "image/avif";
    if (brand_in(major, heic_brands)) return "image/heic";
    if (brand_in(major, heif_brands)) {
        for (size_t i = 16; i + 4 <= end; i += 4)
            if (brand_in(head + i, avif_brands)) return "image/avif";
        for (size_t i = 16; i + 4 <= end; i += 4)
            if (brand_in(head + i, heic_brands)) return "image/heic";
        return "image/heif";
    }
    if (memcmp(major, "M4A ", 4) == 0) return "audio/mp4";
    if (memcmp(major, "qt  ", 4) == 0) return "video/quicktime";
    if (brand_in(major, mp4_brands)) return "video/mp4";
    return NULL;
}

/* EBML: Matroska and WebM share the header; the DocType element (ID 42 82)
 * says which. */
static const char *sniff_ebml(const uint8_t *head, size_t n)
{
    if (!AT(0, "\x1A\x45\xDF\xA3")) return NULL;
    for (size_t i = 4; i + 3 <= n; i++) {
        if (head[i] != 0x42 || head[i + 1] != 0x82) continue;
        const uint8_t *v = head + i + 3;   /* after a one-byte size (0x80 | len) */
        size_t left = n - (i + 3);
        if (left >= 4 && memcmp(v, "webm", 4) == 0) return "video/webm";
        if (left >= 8 && memcmp(v, "matroska", 8) == 0) return "video/x-matroska";
    }
    return "video/webm";
}

/* BMP: "BM", then a DIB header whose size is one of the known versions. */
static int is_bmp(const uint8_t *head, size_t n)
{
    if (n < 18 || !AT(0, "BM")) return 0;
    uint32_t dib = le32(head + 14);
    return dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 || dib == 124;
}

/* An MPEG audio frame header without ID3: sync, layer III (MPEG-1 FFFB/FFFA,
 * MPEG-2 FFF3/FFF2), a bitrate index other than "bad" (15) and a sampling
 * rate index other than "reserved" (3). */
static int is_mpeg_frame(const uint8_t *head, size_t n)
{
    if (n < 4 || head[0] != 0xFF) return 0;
    if (head[1] != 0xFB && head[1] != 0xFA && head[1] != 0xF3 && head[1] != 0xF2) return 0;
    return (head[2] >> 4) != 0x0F && ((head[2] >> 2) & 3) != 3;
}

/* Text: UTF-8 without NUL and without controls other than \t \n \r \f (so
 * no DEL, no C1 U+0080..U+009F). The window may end inside a character. */
static int is_text(const uint8_t *head, size_t n)
{
    iy_utf8 st = { 0, 0, 0 };
    if (iy_utf8_feed(&st, head, n) != 0) return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = head[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') return 0;
        if (c == 0x7F) return 0;
        if (c == 0xC2 && i + 1 < n && head[i + 1] >= 0x80 && head[i + 1] <= 0x9F) return 0;
    }
    return 1;
}

const char *media_sniff(const uint8_t *head, size_t n)
{
    if (n > MEDIA_SNIFF_LEN) n = MEDIA_SNIFF_LEN;
    if (n == 0) return "text/plain";
    const char *t;
    if (AT(0, "\xFF\xD8\xFF")) return "image/jpeg";
    if (AT(0, "\x89PNG\r\n\x1A\n")) return "image/png";
    if (AT(0, "GIF87a") || AT(0, "GIF89a")) return "image/gif";
    if (AT(0, "RIFF") && AT(8, "WEBP")) return "image/webp";
    if (AT(0, "RIFF") && AT(8, "WAVE")) return "audio/wav";
    if ((t = sniff_bmff(head, n))) return t;
    if (is_bmp(head, n)) return "image/bmp";
    if (AT(0, "%PDF-")) return "application/pdf";
    if (AT(0, "PK\x03\x04") || AT(0, "PK\x05\x06")) return "application/zip";
    if (AT(0, "\x1F\x8B\x08")) return "application/gzip";
    if ((t = sniff_ebml(head, n))) return t;
    if (AT(0, "OggS\x00")) return "audio/ogg";
    if (AT(0, "ID3") || is_mpeg_frame(head, n)) return "audio/mpeg";
    if (is_text(head, n)) return "text/plain";
    return "application/octet-stream";
}

int media_is_image(const char *mime)
{
    static const char *const ok[] = { "image/jpeg", "image/png", "image/gif", "image/webp", NULL };
    if (!mime) return 0;
    for (const char *const *p = ok; *p; p++)
        if (strcmp(mime, *p) == 0) return 1;
    return 0;
}

/* ---- media_safe_name ---- */

/* The length of the valid UTF-8 character at p[0..left) and its code point,
 * or 0 if the bytes there are not one. */
static size_t utf8_char(const uint8_t *p, size_t left, uint32_t *cp)
{
    size_t len = p[0] < 0x80 ? 1 : p[0] < 0xC2 ? 0 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : p[0] < 0xF5 ? 4 : 0;
    if (len == 0 || len > left || iy_utf8_validate((const char *)p, len) != 0) return 0;
    static const uint8_t mask[5] = { 0, 0x7F, 0x1F, 0x0F, 0x07 };
    uint32_t c = p[0] & mask[len];
    for (size_t i = 1; i < len; i++) c = c << 6 | (p[i] & 0x3F);
    *cp = c;
    return len;
}

static int dropped(uint32_t c)
{
    if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return 1;   /* C0, DEL, C1 */
    if (c == '"' || c == '\\') return 1;
    return c == 0x061C || c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) ||
           (c >= 0x2066 && c <= 0x2069);
}

int media_safe_name(const char *in, size_t n, char *out, size_t cap)
{
    if (cap == 0) return 0;
    size_t start = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i] == '/' || in[i] == '\\') start = i + 1;
    size_t limit = cap - 1 < MEDIA_NAME_MAX ? cap - 1 : MEDIA_NAME_MAX;
    const uint8_t *p = (const uint8_t *)in;
    size_t len = 0;
    for (size_t i = start; i < n;) {
        uint32_t c;
        size_t cl = utf8_char(p + i, n - i, &c);
        if (cl == 0) { i++; continue; }                      /* invalid byte: dropped */
        if (!dropped(c) && !(len == 0 && (c == ' ' || c == '.'))) {
            if (len + cl > limit) break;                     /* cut on a character boundary */
            memcpy(out + len, p + i, cl);
            len += cl;
        }
        i += cl;
    }
    while (len > 0 && (out[len - 1] == ' ' || out[len - 1] == '.')) len--;
    if (len == 0) {
        len = limit < 4 ? limit : 4;
        memcpy(out, "file", len);
    }
    out[len] = '\0';
    return (int)len;
}

/* ---- media_content_disposition ---- */

/* RFC 5987 attr-char: what filename*= may carry unencoded. */
static int attr_char(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$&+-.^_`|~", c) != NULL);
}

void media_content_disposition(iy_buf *out, const char *name, int inline_)
{
    static const char hex[] = "0123456789ABCDEF";
    const uint8_t *p = (const uint8_t *)name;
    iy_buf_append_str(out, inline_ ? "inline; filename=\"" : "attachment; filename=\"");
    for (size_t i = 0; p[i]; i++) {
        uint8_t c = p[i];
        if ((c & 0xC0) == 0x80) continue;   /* continuation byte: its character is one '_' */
        int plain = c >= 0x20 && c < 0x7F && c != '"' && c != '\\' && c != '%';
        iy_buf_putc(out, plain ? (char)c : '_');
    }
    iy_buf_append_str(out, "\"; filename*=UTF-8''");
    for (size_t i = 0; p[i]; i++) {
        if (attr_char(p[i])) {
            iy_buf_putc(out, (char)p[i]);
        } else {
            char e[3] = { '%', hex[p[i] >> 4], hex[p[i] & 15] };
            iy_buf_append(out, e, 3);
        }
    }
}
