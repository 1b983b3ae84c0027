/* thumb.h — JPEG thumbnails of uploaded images, made with libvips.
 *
 * libvips is loaded at run time (dlopen "libvips.so.42", Debian 12's
 * libvips42), not linked: without it the server runs and attachments
 * simply have no thumbnail. See thumb.c for why no vips header is used.
 *
 * THREADS: media_thumb_file() decodes and resizes an image: tens of
 * milliseconds, more for a big one. Call it on a worker thread, never on an
 * I/O thread. libvips is thread-safe once initialised, so several workers
 * may make thumbnails at once. A worker thread that has made thumbnails
 * calls media_thumb_thread_end() before it exits.
 *
 * Only the JPEG, PNG, GIF and WebP loaders of libvips are enabled (the
 * types media_is_image() accepts): every other loader (SVG, PDF, HEIF,
 * ImageMagick, TIFF, FITS, Matlab...) is blocked process-wide, so a file
 * that is something else fails with IY_EINVAL whatever its bytes claim. */
#ifndef IY_MEDIA_THUMB_H
#define IY_MEDIA_THUMB_H
#include <stddef.h>
#include <stdint.h>

#define MEDIA_THUMB_MAX_PIXELS 40000000ull   /* width * height refused above this */
#define MEDIA_THUMB_MAX_SIDE 16384            /* width or height refused above this */

/* Loads libvips and initialises it, once per process (pthread_once; safe
 * to call from any thread, any number of times). Returns 0 if thumbnails
 * can be made, else IY_EUNAVAIL (libvips missing, too old, or vips_init
 * failed), the same answer on every call; the reason is logged once. */
int media_thumb_init(void);

/* A JPEG thumbnail of the image file at path: the longest side at most
 * max_side pixels (1..MEDIA_THUMB_MAX_SIDE; smaller images are not
 * enlarged), aspect kept, turned upright by its EXIF orientation, alpha
 * flattened on white, metadata stripped, quality 80. The first frame of an
 * animation. Before decoding, the header's dimensions are checked: over
 * MEDIA_THUMB_MAX_SIDE on a side or MEDIA_THUMB_MAX_PIXELS in all is
 * refused (decompression bombs).
 * On success *jpeg is an iy_malloc'd buffer of *len bytes that the caller
 * frees with iy_free. On failure *jpeg is NULL and *len 0.
 * path is the server's own file name: one containing '[' is refused (libvips
 * would read "name[options]" as loader options).
 * Returns 0, IY_EUNAVAIL (no libvips: media_thumb_init failed), IY_EINVAL
 * (max_side out of range, a '[' in path, or not a JPEG/PNG/GIF/WebP libvips
 * can read; libvips's message is logged), IY_ETOOBIG (dimensions over the
 * limits). */
int media_thumb_file(const char *path, int max_side, uint8_t **jpeg, size_t *len);

/* Frees what libvips keeps for the calling thread. Call it at the end of a
 * worker thread that called media_thumb_file(); does nothing if libvips is
 * not loaded. */
void media_thumb_thread_end(void);

/* Stops libvips for good, at the end of an orderly exit, once no thread can
 * call media_thumb_file() any more: joins libvips's own worker threads and
 * drops its caches. Afterwards media_thumb_init() and media_thumb_file()
 * return IY_EUNAVAIL. Does nothing if libvips was never loaded; safe to call
 * twice. Optional, but under LeakSanitizer it is needed: LSan, as GCC 12
 * ships it, crashes ("Tracer caught signal 11") scanning the dynamic TLS of
 * libvips's threads if they are still alive at exit. */
void media_thumb_shutdown(void);

#endif
