/* test_media.c — attachments' building blocks: the content sniffer from
 * real magic bytes (and never an active type for HTML, SVG or script), the
 * UTF-8 text test at the edge of the window, safe file names, the
 * Content-Disposition value, and libvips thumbnails of the fixtures in
 * tests/unit/media/ (written by tests/unit/media/make.py; paths relative to
 * the repository root, where make runs the tests). Without libvips the
 * thumbnail part says "skipped (no libvips)" and passes. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "t.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/alloc.h"
#include "base/utf8.h"
#include "media/sniff.h"
#include "media/thumb.h"

#define FIX(name) "tests/unit/media/" name
#define SNIFF(lit) media_sniff((const uint8_t *)(lit), sizeof(lit) - 1)
#define IS(got, want) CHECK(strcmp((got), (want)) == 0)

static const char *sniff_str(const char *s) { return media_sniff((const uint8_t *)s, strlen(s)); }

static void test_sniff_magic(void)
{
    IS(SNIFF("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01"), "image/jpeg");
    IS(SNIFF("\xFF\xD8\xFF\xE1\x12\x34" "Exif\x00\x00"), "image/jpeg");
    IS(SNIFF("\x89PNG\r\n\x1A\n\x00\x00\x00\x0DIHDR"), "image/png");
    IS(SNIFF("\x89PNG\r\n\x1A"), "application/octet-stream");          /* cut signature */
    IS(SNIFF("GIF89a\x01\x00\x01\x00\x80\x00\x00"), "image/gif");
    IS(SNIFF("GIF87a\x01\x00\x01\x00\x00\x00\x00"), "image/gif");
    IS(SNIFF("RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00"), "image/webp");
    IS(SNIFF("RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00"), "audio/wav");
    IS(SNIFF("RIFF\x24\x08\x00\x00" "AVI LIST"), "application/octet-stream");
    /* ISO BMFF: size, "ftyp", major brand, minor version, compatible brands */
    IS(SNIFF("\x00\x00\x00\x1C" "ftyp" "avif" "\x00\x00\x00\x00" "avifmif1miaf"), "image/avif");
    IS(SNIFF("\x00\x00\x00\x18" "ftyp" "avis" "\x00\x00\x00\x00" "avismsf1"), "image/avif");
    IS(SNIFF("\x00\x00\x00\x1C" "ftyp" "mif1" "\x00\x00\x00\x00" "mif1avifmiaf"), "image/avif");
    IS(SNIFF("\x00\x00\x00\x18" "ftyp" "heic" "\x00\x00\x00\x00" "mif1heic"), "image/heic");
    IS(SNIFF("\x00\x00\x00\x18" "ftyp" "heix" "\x00\x00\x00\x00" "mif1heix"), "image/heic");
    IS(SNIFF("\x00\x00\x00\x18" "ftyp" "mif1" "\x00\x00\x00\x00" "mif1heic"), "image/heic");
    IS(SNIFF("\x00\x00\x00\x14" "ftyp" "mif1" "\x00\x00\x00\x00" "mif1"), "image/heif");
    /* a compatible brand past the box's own size is not the box's */
    IS(SNIFF("\x00\x00\x00\x14" "ftyp" "mif1" "\x00\x00\x00\x00" "mif1" "avif"), "image/heif");
    IS(SNIFF("\x00\x00\x00\x20" "ftyp" "isom" "\x00\x00\x02\x00" "isomiso2avc1mp41"), "video/mp4");
    IS(SNIFF("\x00\x00\x00\x18" "ftyp" "mp42" "\x00\x00\x00\x00" "mp42isom"), "video/mp4");
    IS(SNIFF("\x00\x00\x00\x1C" "ftyp" "M4V " "\x00\x00\x00\x01" "M4V M4A mp42"), "video/mp4");
    IS(SNIFF("\x00\x00\x00\x1C" "ftyp" "M4A " "\x00\x00\x00\x00" "M4A mp42isom"), "audio/mp4");
    IS(SNIFF("\x00\x00\x00\x14" "ftyp" "qt  " "\x00\x00\x02\x00" "qt  "), "video/quicktime");
    IS(SNIFF("\x00\x00\x00\x14" "ftyp" "zzzz" "\x00\x00\x00\x00" "zzzz"), "application/octet-stream");
    IS(SNIFF("\x00\x00\x00\x18" "ftyp" "avif"), "application/octet-stream");   /* cut box */
    /* BMP: "BM", file size, reserved, pixel offset, DIB header size 40 */
    IS(SNIFF("BM\x46\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x02\x00"), "image/bmp");
    IS(SNIFF("BM\x46\x00\x00\x00\x00\x00\x00\x00\x1A\x00\x00\x00\x0C\x00\x00\x00"), "image/bmp");
    IS(sniff_str("BMW is a car maker, not a bitmap."), "text/plain");
    IS(SNIFF("%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"), "application/pdf");
    IS(SNIFF("PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00"), "application/zip");   /* a docx */
    IS(SNIFF("PK\x05\x06\x00\x00\x00\x00"), "application/zip");                        /* empty zip */
    IS(SNIFF("\x1F\x8B\x08\x00\x00\x00\x00\x00\x00\x03"), "application/gzip");
    IS(SNIFF("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\xF7\x81\x01\x42\x82\x84webm\x42\x87"), "video/webm");
    IS(SNIFF("\x1A\x45\xDF\xA3\xA3\x42\x86\x81\x01\x42\x82\x88matroska\x42\x87"), "video/x-matroska");
    IS(SNIFF("ID3\x04\x00\x00\x00\x00\x00\x23TSSE"), "audio/mpeg");
    IS(SNIFF("\xFF\xFB\x90\x64\x00\x00"), "audio/mpeg");     /* MPEG-1 layer III, 128 kb/s */
    IS(SNIFF("\xFF\xF3\x48\xC4\x00\x00"), "audio/mpeg");     /* MPEG-2 layer III */
    IS(SNIFF("\xFF\xF2\x48\xC4\x00\x00"), "audio/mpeg");
    IS(SNIFF("\xFF\xFB\xF0\x64"), "application/octet-stream");   /* bitrate index 15: no frame */
    IS(SNIFF("\xFF\xFB\x9C\x64"), "application/octet-stream");   /* rate index 3: reserved */
    IS(SNIFF("OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00"), "audio/ogg");
    IS(SNIFF("\x7F" "ELF\x02\x01\x01\x00"), "application/octet-stream");
    IS(SNIFF("MZ\x90\x00\x03\x00\x00\x00"), "application/octet-stream");
    /* only the first MEDIA_SNIFF_LEN bytes count, and a longer n is fine */
    uint8_t big[2048];
    memset(big, 'a', sizeof big);
    big[MEDIA_SNIFF_LEN + 10] = 0;   /* a NUL past the window: not seen */
    IS(media_sniff(big, sizeof big), "text/plain");
    big[MEDIA_SNIFF_LEN - 1] = 0;
    IS(media_sniff(big, sizeof big), "application/octet-stream");

    CHECK(media_is_image("image/jpeg") && media_is_image("image/png") && media_is_image("image/gif") &&
          media_is_image("image/webp"));
    CHECK(!media_is_image("image/avif") && !media_is_image("image/heic") && !media_is_image("image/bmp"));
    CHECK(!media_is_image("image/svg+xml") && !media_is_image("text/plain") && !media_is_image(NULL));
    CHECK(!media_is_image("image/jpeg2") && !media_is_image("image/"));
}

/* Whatever the bytes, never a type a browser would run or render as a
 * document. */
static int active(const char *t)
{
    static const char *const bad[] = { "text/html", "image/svg+xml", "text/xml", "application/xml",
                                       "application/xhtml+xml", "application/javascript",
                                       "text/javascript", "application/x-shockwave-flash", NULL };
    for (const char *const *p = bad; *p; p++)
        if (strcmp(t, *p) == 0) return 1;
    return strstr(t, "html") || strstr(t, "xml") || strstr(t, "script");
}

static void test_sniff_active(void)
{
    static const char *const docs[] = {
        "<!doctype html><html><body><script>alert(1)</script></body></html>",
        "<!DOCTYPE HTML>\n<title>x</title>",
        "\xEF\xBB\xBF<html><body onload=alert(1)>",
        "<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
        "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
        "<script>fetch('/v1/me')</script>",
        "   \n\t<iframe src=javascript:alert(1)>",
        "<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"/>",
        "#!/bin/sh\nrm -rf /\n",
        "%!PS-Adobe-3.0\n",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        const char *t = sniff_str(docs[i]);
        CHECK(!active(t));
        IS(t, "text/plain");
    }
    /* the same with a binary byte: octet-stream, still not active */
    IS(SNIFF("<html>\x00<script>"), "application/octet-stream");
    IS(SNIFF("<svg>\x01</svg>"), "application/octet-stream");
    /* GIF/HTML polyglot: an image, and served as one (nosniff) */
    IS(SNIFF("GIF89a<script>alert(1)</script>"), "image/gif");
    /* UTF-16 HTML (BOM, NULs): bytes */
    IS(SNIFF("\xFF\xFE<\x00h\x00t\x00m\x00l\x00>\x00"), "application/octet-stream");
}

static void test_sniff_text(void)
{
    IS(sniff_str("hello, world\n"), "text/plain");
    IS(sniff_str("안녕하세요 🎉\r\n\tcolumns\fpage"), "text/plain");
    IS(SNIFF(""), "text/plain");
    IS(SNIFF("a\x00" "b"), "application/octet-stream");       /* NUL */
    IS(SNIFF("a\x1B[31mred"), "application/octet-stream");    /* ESC */
    IS(SNIFF("a\x7F"), "application/octet-stream");           /* DEL */
    IS(SNIFF("a\x08"), "application/octet-stream");           /* backspace */
    IS(SNIFF("a\xC2\x85" "b"), "application/octet-stream");   /* C1 NEL */
    IS(SNIFF("a\xC2\xA0" "b"), "text/plain");                 /* NBSP is no control */
    IS(SNIFF("a\xFF" "b"), "application/octet-stream");       /* not UTF-8 */
    IS(SNIFF("a\xC0\xAF"), "application/octet-stream");       /* overlong */
    IS(SNIFF("a\xED\xA0\x80"), "application/octet-stream");   /* surrogate */
    IS(SNIFF("\x80" "abc"), "application/octet-stream");      /* lone continuation */
    IS(SNIFF("\xEA\xB0" "a"), "application/octet-stream");    /* cut character inside */
    /* a character cut by the end of the window is fine, at any length */
    IS(SNIFF("abc\xEA"), "text/plain");
    IS(SNIFF("abc\xEA\xB0"), "text/plain");
    IS(SNIFF("abc\xF0\x9F\x8E"), "text/plain");
    IS(SNIFF("abc\xE0\x80"), "application/octet-stream");     /* no valid character starts so */
    uint8_t ko[600];
    for (size_t i = 0; i + 3 <= sizeof ko; i += 3) memcpy(ko + i, "가", 3);
    IS(media_sniff(ko, 511), "text/plain");   /* 170 characters and 1 byte of the next */
    IS(media_sniff(ko, 512), "text/plain");   /* 170 characters and 2 bytes */
    IS(media_sniff(ko, sizeof ko), "text/plain");   /* the window ends inside a character */
    ko[300] = 0;
    IS(media_sniff(ko, sizeof ko), "application/octet-stream");
}

static void safe(const char *in, size_t n, const char *want)
{
    char out[MEDIA_NAME_MAX + 1];
    int len = media_safe_name(in, n, out, sizeof out);
    CHECK_EQ(len, strlen(want));
    CHECK_EQ(strlen(out), (size_t)len);
    if (strcmp(out, want) != 0) fprintf(stderr, "  safe name: got \"%s\", want \"%s\"\n", out, want);
    IS(out, want);
}

#define SAFE(lit, want) safe((lit), sizeof(lit) - 1, (want))

static void test_safe_name(void)
{
    SAFE("report.pdf", "report.pdf");
    SAFE("../../etc/passwd", "passwd");
    SAFE("a\\b\\c.txt", "c.txt");
    SAFE("C:\\Users\\me\\Desktop\\photo.jpg", "photo.jpg");
    SAFE("dir/sub\\mixed/name.png", "name.png");
    SAFE("say \"hi\".txt", "say hi.txt");
    SAFE("Bob's notes.txt", "Bob's notes.txt");
    SAFE("a\x01" "b\x7F\n\r\tc.txt", "abc.txt");
    SAFE("a\xC2\x85" "b.txt", "ab.txt");                           /* C1 */
    SAFE("a\0b.txt", "ab.txt");                                     /* NUL */
    SAFE("a\xFF\xFE" "b.txt", "ab.txt");                            /* not UTF-8 */
    SAFE("invoice\xE2\x80\xAE" "fdp.exe", "invoicefdp.exe");        /* RLO */
    SAFE("\xE2\x81\xA6x\xE2\x81\xA9.txt", "x.txt");                 /* LRI, PDI */
    SAFE("사진 2024-05-01.jpg", "사진 2024-05-01.jpg");
    SAFE("회의록/최종 (진짜).docx", "최종 (진짜).docx");
    SAFE("🎉party🎉.gif", "🎉party🎉.gif");
    SAFE("", "file");
    SAFE("...", "file");
    SAFE("..", "file");
    SAFE("/", "file");
    SAFE("dir/", "file");
    SAFE(" . . ", "file");
    SAFE("\"\"\\", "file");
    SAFE("\x01\x02", "file");
    SAFE(" .hidden ", "hidden");
    SAFE("report. . ", "report");
    SAFE("..\\..\\boot.ini", "boot.ini");

    /* 300 bytes: cut to at most MEDIA_NAME_MAX on a character boundary */
    char in[400], out[MEDIA_NAME_MAX + 1];
    memset(in, 'a', 300);
    CHECK_EQ(media_safe_name(in, 300, out, sizeof out), MEDIA_NAME_MAX);
    for (int i = 0; i < 100; i++) memcpy(in + 3 * i, "가", 3);
    int len = media_safe_name(in, 300, out, sizeof out);
    CHECK_EQ(len, 198);                                     /* 66 whole characters */
    CHECK_EQ(iy_utf8_validate(out, (size_t)len), 0);
    in[0] = 'x';
    for (int i = 0; i < 100; i++) memcpy(in + 1 + 3 * i, "가", 3);
    len = media_safe_name(in, 301, out, sizeof out);
    CHECK_EQ(len, 199);
    CHECK_EQ(iy_utf8_validate(out, (size_t)len), 0);
    for (int i = 0; i < 75; i++) memcpy(in + 4 * i, "😀", 4);
    len = media_safe_name(in, 300, out, sizeof out);
    CHECK_EQ(len, 200);
    CHECK_EQ(iy_utf8_validate(out, (size_t)len), 0);
    /* a cut that leaves a trailing space or dot trims it too */
    memset(in, 'b', 199);
    in[199] = ' ';
    memset(in + 200, 'c', 50);
    len = media_safe_name(in, 250, out, sizeof out);
    CHECK_EQ(len, 199);
    CHECK(out[198] == 'b');
    /* a small cap */
    char tiny[4];
    CHECK_EQ(media_safe_name("abcdef", 6, tiny, sizeof tiny), 3);
    IS(tiny, "abc");
    CHECK_EQ(media_safe_name("가나", 6, tiny, sizeof tiny), 3);
    IS(tiny, "가");
    CHECK_EQ(media_safe_name("", 0, tiny, 3), 2);
    IS(tiny, "fi");
}

static void cd(const char *name, int inline_, const char *want)
{
    iy_buf b = { 0 };
    media_content_disposition(&b, name, inline_);
    const char *got = iy_buf_cstr(&b);
    if (strcmp(got, want) != 0) fprintf(stderr, "  disposition: got  %s\n               want %s\n", got, want);
    IS(got, want);
    /* nothing in a name can end the header or the quoted string */
    CHECK(!strchr(got, '\r') && !strchr(got, '\n'));
    int quotes = 0;
    for (const char *p = got; *p; p++) quotes += *p == '"';
    CHECK_EQ(quotes, 2);
    iy_buf_free(&b);
}

static void test_disposition(void)
{
    cd("report.pdf", 0, "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf");
    cd("사진.jpg", 1, "inline; filename=\"__.jpg\"; filename*=UTF-8''%EC%82%AC%EC%A7%84.jpg");
    cd("회의록 최종.docx", 0,
       "attachment; filename=\"___ __.docx\"; "
       "filename*=UTF-8''%ED%9A%8C%EC%9D%98%EB%A1%9D%20%EC%B5%9C%EC%A2%85.docx");
    cd("🎉.gif", 1, "inline; filename=\"_.gif\"; filename*=UTF-8''%F0%9F%8E%89.gif");
    cd("Bob's (v2) 100%.txt", 0,
       "attachment; filename=\"Bob's (v2) 100_.txt\"; filename*=UTF-8''Bob%27s%20%28v2%29%20100%25.txt");
    /* raw, unsanitised names cannot break out either */
    cd("a\"; filename=\"evil.html", 0,
       "attachment; filename=\"a_; filename=_evil.html\"; filename*=UTF-8''a%22%3B%20filename%3D%22evil.html");
    cd("x\r\nSet-Cookie: a=b", 0,
       "attachment; filename=\"x__Set-Cookie: a=b\"; filename*=UTF-8''x%0D%0ASet-Cookie%3A%20a%3Db");
    cd("back\\slash", 0, "attachment; filename=\"back_slash\"; filename*=UTF-8''back%5Cslash");
    cd("a\xFF" "b", 0, "attachment; filename=\"a_b\"; filename*=UTF-8''a%FFb");
    cd("!#$&+-.^_`|~", 0, "attachment; filename=\"!#$&+-.^_`|~\"; filename*=UTF-8''!#$&+-.^_`|~");
    /* appends */
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "Content-Disposition: ");
    media_content_disposition(&b, "a", 0);
    IS(iy_buf_cstr(&b), "Content-Disposition: attachment; filename=\"a\"; filename*=UTF-8''a");
    iy_buf_free(&b);
}

/* ---- thumbnails ---- */

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* The dimensions of a JPEG from its SOF0..SOF2 marker; 0 if not found.
 * *exif: 1 if an APP1 "Exif" segment comes first. */
static int jpeg_size(const uint8_t *j, size_t n, int *w, int *h, int *exif)
{
    *w = *h = *exif = 0;
    if (n < 4 || j[0] != 0xFF || j[1] != 0xD8 || j[2] != 0xFF) return 0;
    for (size_t i = 2; i + 4 <= n;) {
        if (j[i] != 0xFF) return 0;
        uint8_t m = j[i + 1];
        if (m == 0xFF) { i++; continue; }
        size_t seg = be16(j + i + 2);
        if (i + 2 + seg > n) return 0;
        if (m == 0xE1 && seg >= 8 && memcmp(j + i + 4, "Exif", 4) == 0) *exif = 1;
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            *h = be16(j + i + 5);
            *w = be16(j + i + 7);
            return 1;
        }
        if (m == 0xDA) return 0;
        i += 2 + seg;
    }
    return 0;
}

static void thumb_ok(const char *path, int max_side, int want_w, int want_h)
{
    uint8_t *j = NULL;
    size_t n = 0;
    int err = media_thumb_file(path, max_side, &j, &n);
    CHECK_EQ(err, 0);
    if (err) {
        fprintf(stderr, "  thumbnail of %s failed\n", path);
        return;
    }
    CHECK(n > 100 && j[0] == 0xFF && j[1] == 0xD8 && j[2] == 0xFF);
    int w, h, exif;
    CHECK(jpeg_size(j, n, &w, &h, &exif));
    if (w != want_w || h != want_h)
        fprintf(stderr, "  thumbnail of %s at %d: %dx%d, want %dx%d\n", path, max_side, w, h, want_w, want_h);
    CHECK(w == want_w && h == want_h);
    CHECK(w <= max_side && h <= max_side);
    CHECK(!exif);   /* metadata stripped */
    iy_free(j);
}

static void thumb_fails(const char *path, int max_side, int want)
{
    uint8_t *j = (uint8_t *)"x";
    size_t n = 7;
    CHECK_EQ(media_thumb_file(path, max_side, &j, &n), want);
    CHECK(j == NULL && n == 0);
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

typedef struct worker { int err, w, h, exif; } worker;

static void *worker_main(void *arg)
{
    worker *wk = arg;
    for (int i = 0; i < 5 && !wk->err; i++) {
        uint8_t *j;
        size_t n;
        wk->err = media_thumb_file(FIX("photo.png"), 100, &j, &n);
        if (!wk->err) {
            jpeg_size(j, n, &wk->w, &wk->h, &wk->exif);
            iy_free(j);
        }
    }
    media_thumb_thread_end();
    return NULL;
}

static void test_thumbs(void)
{
    int init = media_thumb_init();
    CHECK_EQ(media_thumb_init(), init);   /* once, same answer */
    if (init != 0) {
        CHECK_EQ(init, IY_EUNAVAIL);
        uint8_t *j;
        size_t n;
        CHECK_EQ(media_thumb_file(FIX("photo.png"), 320, &j, &n), IY_EUNAVAIL);
        printf("test_media: thumbnails skipped (no libvips)\n");
        return;
    }
    if (access(FIX("photo.png"), R_OK) != 0) {
        CHECK(!"fixtures missing: run from the repository root");
        return;
    }
    thumb_ok(FIX("photo.png"), 320, 320, 240);
    thumb_ok(FIX("photo.png"), 100, 100, 75);
    thumb_ok(FIX("photo.png"), 1000, 400, 300);   /* never enlarged */
    thumb_ok(FIX("alpha.png"), 320, 32, 32);      /* alpha flattened */
    thumb_ok(FIX("alpha.png"), 8, 8, 8);
    thumb_ok(FIX("rotated.jpg"), 20, 10, 20);     /* 80x40 turned upright by EXIF 6 */
    thumb_ok(FIX("rotated.jpg"), 320, 40, 80);

    thumb_fails(FIX("notimage.txt"), 320, IY_EINVAL);
    thumb_fails(FIX("make.py"), 320, IY_EINVAL);
    thumb_fails(FIX("no-such-file.png"), 320, IY_EINVAL);
    thumb_fails(FIX("photo.png"), 0, IY_EINVAL);
    thumb_fails(FIX("photo.png"), MEDIA_THUMB_MAX_SIDE + 1, IY_EINVAL);
    thumb_fails(FIX("photo.png[shrink=2]"), 320, IY_EINVAL);

    /* an SVG (libvips could render it with librsvg): its loader is blocked */
    char svg[] = "/tmp/iyagi-test-media-XXXXXX.svg";
    int fd = mkstemps(svg, 4);
    CHECK(fd >= 0);
    if (fd >= 0) {
        static const char doc[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\">"
                                  "<rect width=\"64\" height=\"64\" fill=\"red\"/></svg>\n";
        CHECK(write(fd, doc, sizeof doc - 1) == (ssize_t)(sizeof doc - 1));
        close(fd);
        thumb_fails(svg, 32, IY_EINVAL);
        unlink(svg);
    }

    /* 100000 x 100000 in the header: refused before any pixel is decoded */
    long before = maxrss_kb();
    thumb_fails(FIX("bomb.png"), 320, IY_ETOOBIG);
    long grew = maxrss_kb() - before;
    if (grew > 100 * 1024) fprintf(stderr, "  bomb.png: max RSS grew by %ld KB\n", grew);
    CHECK(grew < 100 * 1024);

    /* several worker threads at once */
    pthread_t th[4];
    worker wk[4];
    memset(wk, 0, sizeof wk);
    for (int i = 0; i < 4; i++) CHECK_EQ(pthread_create(&th[i], NULL, worker_main, &wk[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(wk[i].err, 0);
        CHECK(wk[i].w == 100 && wk[i].h == 75 && !wk[i].exif);
    }
}

/* The end: libvips's threads joined (LeakSanitizer needs it), then
 * thumbnails unavailable for good. */
static void test_thumb_shutdown(void)
{
    media_thumb_shutdown();
    media_thumb_shutdown();
    CHECK_EQ(media_thumb_init(), IY_EUNAVAIL);
    thumb_fails(FIX("photo.png"), 320, IY_EUNAVAIL);
    media_thumb_thread_end();
}

int main(void)
{
    test_sniff_magic();
    test_sniff_active();
    test_sniff_text();
    test_safe_name();
    test_disposition();
    test_thumbs();
    test_thumb_shutdown();
    return T_DONE("test_media");
}
