/* thumb.c — thumbnails through libvips, loaded with dlopen (thumb.h).
 *
 * Why dlopen and no <vips/vips.h>: the headers come with libvips-dev, which
 * pulls about 129 Debian packages into the two-command setup, while the
 * runtime library (libvips42) is one optional package. We call a dozen
 * functions, so their prototypes are declared here by hand, from the libvips
 * 8.14 headers (Debian 12 ships 8.14.1):
 *
 *   vips.h       int vips_init(const char *argv0);
 *                int vips_version(int flag);          3 = current, 5 = age
 *                void vips_thread_shutdown(void);
 *                void vips_shutdown(void);
 *   image.h      VipsImage *vips_image_new_from_file(const char *name, ...);
 *   header.h     int vips_image_get_width(const VipsImage *image);
 *                int vips_image_get_height(const VipsImage *image);
 *   resample.h   int vips_thumbnail(const char *filename, VipsImage **out,
 *                                   int width, ...);
 *   foreign.h    int vips_jpegsave_buffer(VipsImage *in, void **buf,
 *                                         size_t *len, ...);
 *   error.h      char *vips_error_buffer_copy(void);  (copies and clears
 *                                    under libvips's lock: thread-safe)
 *   operation.h  void vips_cache_set_max(int max);
 *                void vips_operation_block_set(const char *name, gboolean);
 *   type.h       VipsArrayDouble *vips_array_double_newv(int n, ...);
 *                void vips_area_unref(VipsArea *area);
 *   GLib         void g_object_unref(gpointer); void g_free(gpointer);
 *                (found through libvips's own dependencies by dlsym)
 *
 * The option lists are NULL-terminated varargs of name, value; the values
 * are passed as the types the option has: int for enums and gboolean
 * (TRUE = 1), a pointer for boxed arrays. The enum values (image.h and
 * resample.h declare them without explicit values, so they count from 0):
 *   VipsAccess { RANDOM, SEQUENTIAL, ... }      VIPS_ACCESS_SEQUENTIAL = 1
 *   VipsSize   { BOTH, UP, DOWN, FORCE, ... }   VIPS_SIZE_DOWN = 2
 * The ABI check is the one VIPS_INIT() makes: vips_version(3) -
 * vips_version(5) is 42 for every libvips.so.42.
 *
 * Process-wide settings made once at init: every loader blocked but
 * VipsForeignLoadJpeg, ...Png, ...Nsgif and ...Webp (the class names of
 * libvips 8.14's loaders; vips_operation_block_set applies to a class and
 * its subclasses), so SVG, PDF, ImageMagick and the rest never parse an
 * upload; and the operation cache off (vips_cache_set_max(0)): a thumbnail
 * is made once per upload, and the cache would keep images and file
 * descriptors of files that are gone, or answer a stale result for a path
 * that was reused.
 *
 * The dimensions are read with a sequential open, which parses only the
 * header; vips_thumbnail then opens the file again and uses the loaders'
 * shrink-on-load (JPEG decodes at 1/2, 1/4, 1/8 scale). */
#include "thumb.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"

typedef struct vips_image vips_image;     /* VipsImage, opaque here */
typedef struct vips_area vips_area;       /* VipsArea / VipsArrayDouble */

#define V_ACCESS_SEQUENTIAL 1
#define V_SIZE_DOWN 2
#define V_TRUE 1
#define V_FALSE 0
#define V_ABI 42
#define THUMB_Q 80

static struct {
    int (*init)(const char *argv0);
    int (*version)(int flag);
    void (*thread_shutdown)(void);
    void (*shutdown)(void);
    vips_image *(*image_new_from_file)(const char *name, ...);
    int (*image_get_width)(const vips_image *image);
    int (*image_get_height)(const vips_image *image);
    int (*thumbnail)(const char *filename, vips_image **out, int width, ...);
    int (*jpegsave_buffer)(vips_image *in, void **buf, size_t *len, ...);
    char *(*error_buffer_copy)(void);
    void (*cache_set_max)(int max);
    void (*operation_block_set)(const char *name, int state);
    vips_area *(*array_double_newv)(int n, ...);
    void (*area_unref)(vips_area *area);
    void (*g_object_unref)(void *object);
    void (*g_free)(void *mem);
} V;

static pthread_once_t thumb_once = PTHREAD_ONCE_INIT;
static int thumb_err = IY_EUNAVAIL;   /* written once, under thumb_once */
static atomic_int thumb_down;          /* media_thumb_shutdown() was called */
static vips_area *white;   /* the flattening background, kept for the process */

/* dlsym into a function pointer without an object-to-function cast. */
static int sym(void *lib, const char *name, void *fnp, size_t size)
{
    void *p = dlsym(lib, name);
    if (!p) return -1;
    memcpy(fnp, &p, size);
    return 0;
}

#define SYM(field, name) (sym(lib, (name), &V.field, sizeof V.field) == 0)

/* The libvips message, first line, into the log. */
static void log_vips(const char *what, const char *path)
{
    char *msg = V.error_buffer_copy();
    size_t n = msg ? strcspn(msg, "\n") : 0;
    iy_log_warn("media: %s %s: %.*s", what, path, (int)(n > 300 ? 300 : n), msg ? msg : "");
    V.g_free(msg);
}

static void thumb_load(void)
{
    void *lib = dlopen("libvips.so.42", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        iy_log_warn("media: thumbnails off: cannot load libvips (%s); install libvips42", e ? e : "?");
        return;
    }
    /* Never dlclose'd: GLib's type system cannot be unloaded. */
    if (!(SYM(init, "vips_init") && SYM(version, "vips_version") &&
          SYM(thread_shutdown, "vips_thread_shutdown") && SYM(shutdown, "vips_shutdown") &&
          SYM(image_new_from_file, "vips_image_new_from_file") &&
          SYM(image_get_width, "vips_image_get_width") && SYM(image_get_height, "vips_image_get_height") &&
          SYM(thumbnail, "vips_thumbnail") && SYM(jpegsave_buffer, "vips_jpegsave_buffer") &&
          SYM(error_buffer_copy, "vips_error_buffer_copy") && SYM(cache_set_max, "vips_cache_set_max") &&
          SYM(operation_block_set, "vips_operation_block_set") &&
          SYM(array_double_newv, "vips_array_double_newv") && SYM(area_unref, "vips_area_unref") &&
          SYM(g_object_unref, "g_object_unref") && SYM(g_free, "g_free"))) {
        iy_log_warn("media: thumbnails off: libvips.so.42 lacks a function we use (libvips older than 8.13?)");
        return;
    }
    if (V.version(3) - V.version(5) != V_ABI) {
        iy_log_warn("media: thumbnails off: libvips ABI %d, expected %d", V.version(3) - V.version(5), V_ABI);
        return;
    }
    if (V.init("iyagid") != 0) {
        log_vips("thumbnails off: vips_init failed", "");
        return;
    }
    V.cache_set_max(0);
    V.operation_block_set("VipsForeignLoad", V_TRUE);
    V.operation_block_set("VipsForeignLoadJpeg", V_FALSE);
    V.operation_block_set("VipsForeignLoadPng", V_FALSE);
    V.operation_block_set("VipsForeignLoadNsgif", V_FALSE);
    V.operation_block_set("VipsForeignLoadWebp", V_FALSE);
    white = V.array_double_newv(1, 255.0);
    thumb_err = 0;
}

int media_thumb_init(void)
{
    pthread_once(&thumb_once, thumb_load);
    return atomic_load(&thumb_down) ? IY_EUNAVAIL : thumb_err;
}

static void thumb_never(void) {}

void media_thumb_shutdown(void)
{
    pthread_once(&thumb_once, thumb_never);   /* never loads libvips just to stop it */
    if (thumb_err == 0 && !atomic_exchange(&thumb_down, 1)) V.shutdown();
}

void media_thumb_thread_end(void)
{
    if (media_thumb_init() == 0) V.thread_shutdown();
}

/* IY_ETOOBIG if the header of path declares absurd dimensions, IY_EINVAL if
 * no allowed loader reads it, else 0. Decodes no pixels. */
static int check_size(const char *path)
{
    vips_image *im = V.image_new_from_file(path, "access", V_ACCESS_SEQUENTIAL, NULL);
    if (!im) {
        log_vips("not an image:", path);
        return IY_EINVAL;
    }
    unsigned long long w = (unsigned)V.image_get_width(im), h = (unsigned)V.image_get_height(im);
    V.g_object_unref(im);
    if (w == 0 || h == 0) return IY_EINVAL;
    if (w > MEDIA_THUMB_MAX_SIDE || h > MEDIA_THUMB_MAX_SIDE || w * h > MEDIA_THUMB_MAX_PIXELS) {
        iy_log_warn("media: no thumbnail for %s: %llux%llu is over the limits", path, w, h);
        return IY_ETOOBIG;
    }
    return 0;
}

int media_thumb_file(const char *path, int max_side, uint8_t **jpeg, size_t *len)
{
    *jpeg = NULL;
    *len = 0;
    int err = media_thumb_init();
    if (err) return err;
    /* libvips reads "name[options]" as options for the loader: our paths
     * never carry any. */
    if (max_side < 1 || max_side > MEDIA_THUMB_MAX_SIDE || strchr(path, '[')) return IY_EINVAL;
    if ((err = check_size(path))) return err;

    vips_image *thumb = NULL;
    void *buf = NULL;
    size_t n = 0;
    if (V.thumbnail(path, &thumb, max_side, "height", max_side, "size", V_SIZE_DOWN, NULL) != 0) {
        log_vips("no thumbnail for", path);
        return IY_EINVAL;
    }
    if (V.jpegsave_buffer(thumb, &buf, &n, "Q", THUMB_Q, "strip", V_TRUE, "background", white, NULL) != 0) {
        log_vips("cannot save the thumbnail of", path);
        V.g_object_unref(thumb);
        return IY_EINVAL;
    }
    V.g_object_unref(thumb);
    *jpeg = iy_malloc(n ? n : 1);
    memcpy(*jpeg, buf, n);
    *len = n;
    V.g_free(buf);
    return 0;
}
