/* uploads.c — attachments over HTTP: POST /v1/uploads (streamed to a file),
 * GET /v1/attachments/{id} and /thumb (streamed from it).
 *
 * An upload never sits in memory: the transport hands the body over as it
 * arrives (conn_stream_body, net.h), one read's worth at a time; each piece
 * is written to BLOB_DIR/tmp/ID with an asynchronous write on libuv's
 * thread pool while the connection is paused, so a slow disk slows the
 * sender, never the I/O thread. Its steps:
 *
 *   head    the bearer token is present, the name is made safe; the
 *           connection pauses while the storage thread checks the session
 *           and gives the upload its id (store_new_id: one id generator)
 *   open    BLOB_DIR/tmp/ID is created (thread pool); the body streams in
 *   body    one write at a time, of what arrived meanwhile; the connection
 *           pauses while more than UPLOAD_AHEAD waits for the disk
 *   end     on the thread pool (a worker, never an I/O thread): fsync and
 *           close, the type sniffed from the first bytes (media/sniff.h:
 *           the client's Content-Type is ignored), renamed to BLOB_DIR/ID
 *           and the directory synced; an image gets BLOB_DIR/ID.thumb
 *           (media/thumb.h, libvips)
 *   record  the storage thread stores the attachment's record; 201.
 *
 * The record is written only once the bytes are durable, so a record
 * always has its blob; a crash in between leaves a blob without a record
 * (never served: nothing names it). Over --max-upload the transport
 * answers 413 and closes, and the partial file is removed; a connection
 * that goes away mid-upload removes it too; BLOB_DIR/tmp is emptied at
 * start (server.c).
 *
 * A download checks on a reader thread that the caller may see the
 * attachment (its uploader before it is sent, then the members of its
 * channel), then streams the blob 256 KiB at a time, each piece read on the
 * thread pool once the previous one left the socket. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "api_int.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../chat/auth.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include "../media/sniff.h"
#include "../media/thumb.h"
#include "../store/dbq.h"
#include "../store/readq.h"

#define THUMB_SIDE 320
#define DOWNLOAD_PIECE (256u << 10)
#define UPLOAD_AHEAD (512u << 10)   /* an upload's bytes held while one write is out */

/* ---- uploads ---------------------------------------------------------------- */

typedef struct upload {
    dbq_job j;                  /* first: the storage thread's steps (auth + id, record) */
    iothread *t;
    uint64_t conn_id;
    service *svc;
    uint8_t token[32];
    uv_fs_t fs;
    uv_work_t work;
    uv_file fd;
    int busy;                   /* an fs request, the work or a storage job is out */
    int gone;                   /* the connection closed: clean up when idle */
    int complete;               /* the whole body arrived */
    int failed;                 /* a write failed (errno) */
    int work_rc;
    uint64_t off;
    uint8_t head[512];          /* the first bytes, for sniffing */
    size_t headlen;
    iy_buf piece;               /* the bytes being written */
    iy_buf next;                /* bytes received meanwhile (at most UPLOAD_AHEAD, then the
                                   connection pauses): receiving and writing overlap */
    int paused;                 /* we paused the connection */
    iy_attachment a;
    char tmp[4200], path[4200];
} upload;

static void up_noop_free(dbq_job *j) { (void)j; }

static void up_free(upload *u)
{
    if (u->fd >= 0) {
        uv_fs_t r;
        uv_fs_close(NULL, &r, u->fd, NULL);   /* synchronous: only on failure paths */
        uv_fs_req_cleanup(&r);
        u->fd = -1;
    }
    if (u->tmp[0]) unlink(u->tmp);
    iy_buf_free(&u->piece);
    iy_buf_free(&u->next);
    iy_free(u);
}

static conn *up_conn(upload *u)
{
    conn *c = u->gone ? NULL : iothread_conn(u->t, u->conn_id);
    return c && !c->closing ? c : NULL;
}

/* The answer to a failed upload; the body may still be coming, so the
 * connection closes after it. */
static void up_fail(conn *c, upload *u, int err, const char *message)
{
    c->keep_alive = 0;
    c->http->sink = NULL;
    c->http->stream = NULL;
    if (u) up_free(u);
    conn_http_error(c, err, message);
}

static void up_abort(conn *c)
{
    upload *u = c->http->stream;
    u->gone = 1;
    if (!u->busy) up_free(u);
}

static void up_chunk(conn *c, const char *data, size_t len);
static void on_written(uv_fs_t *r);
static const net_sink up_sink = { up_chunk, up_abort };
static void up_finish(upload *u);

/* Writes what was received since the last write (one write at a time, at
 * the end of the file). 0, or the libuv error. */
static int up_write_next(conn *c, upload *u)
{
    iy_buf t = u->piece;
    u->piece = u->next;
    u->next = t;
    iy_buf_reset(&u->next);
    uv_buf_t b = uv_buf_init(u->piece.data, (unsigned)u->piece.len);
    u->fs.data = u;
    u->busy = 1;
    int rc = uv_fs_write(&c->t->loop, &u->fs, u->fd, &b, 1, (int64_t)u->off, on_written);
    if (rc < 0) {
        u->busy = 0;
        return rc;
    }
    u->off += u->piece.len;
    return 0;
}

static void on_written(uv_fs_t *r)
{
    upload *u = r->data;
    u->busy = 0;
    if (r->result < 0) u->failed = (int)-r->result;
    uv_fs_req_cleanup(r);
    conn *c = up_conn(u);
    if (!c) {
        up_free(u);
        return;
    }
    if (u->failed) {
        iy_log_error("upload: writing %s failed: %s", u->tmp, strerror(u->failed));
        up_fail(c, u, IY_EUNAVAIL, u->failed == ENOSPC ? "no room for the upload" : "the upload could not be stored");
        return;
    }
    if (u->next.len && up_write_next(c, u) != 0) {
        up_fail(c, u, IY_EUNAVAIL, "the upload could not be stored");
        return;
    }
    if (u->busy) {
        if (u->paused && u->next.len < UPLOAD_AHEAD) {
            u->paused = 0;
            conn_resume(c);
        }
        return;
    }
    if (u->complete) up_finish(u);
    else if (u->paused) {
        u->paused = 0;
        conn_resume(c);
    }
}

static void up_chunk(conn *c, const char *data, size_t len)
{
    upload *u = c->http->stream;
    if (u->headlen < sizeof u->head) {
        size_t k = sizeof u->head - u->headlen < len ? sizeof u->head - u->headlen : len;
        memcpy(u->head + u->headlen, data, k);
        u->headlen += k;
    }
    iy_buf_append(&u->next, data, len);
    if (!u->busy && up_write_next(c, u) != 0) {
        up_fail(c, u, IY_EUNAVAIL, "the upload could not be stored");
        return;
    }
    if (u->next.len >= UPLOAD_AHEAD) {   /* the disk is behind: the sender waits */
        u->paused = 1;
        conn_pause(c);
    }
}

static void on_opened(uv_fs_t *r)
{
    upload *u = r->data;
    u->busy = 0;
    int fd = (int)r->result;
    uv_fs_req_cleanup(r);
    if (fd >= 0) u->fd = fd;
    conn *c = up_conn(u);
    if (!c) {
        up_free(u);
        return;
    }
    if (fd < 0) {
        iy_log_error("upload: cannot create %s: %s", u->tmp, strerror(-fd));
        u->tmp[0] = '\0';
        up_fail(c, u, IY_EUNAVAIL, "the upload could not be stored");
        return;
    }
    if (conn_stream_body(c, u->svc->cfg.max_upload, &up_sink, u) != 0) {
        up_free(u);   /* answered 413 */
        return;
    }
    conn_resume(c);
}

/* Storage thread: the session, and the upload's id. */
static void up_auth_run(store *s, dbq_job *j)
{
    upload *u = (upload *)j;
    char device[IY_DEVICE_MAX + 1];
    j->err = store_session_get(s, u->token, &u->a.uploader, device);
    if (j->err == 0) u->a.id = store_new_id(s);
}

static void up_auth_done(dbq_job *j)
{
    upload *u = (upload *)j;
    u->busy = 0;
    conn *c = up_conn(u);
    if (!c) {
        up_free(u);
        return;
    }
    if (j->err) {
        up_fail(c, u, j->err == IY_ENOTFOUND ? IY_EUNAUTH : j->err,
                j->err == IY_ENOTFOUND ? "invalid or revoked token" : "storage unavailable, retry");
        return;
    }
    snprintf(u->tmp, sizeof u->tmp, "%s/tmp/%llu", u->svc->cfg.blob_dir, (unsigned long long)u->a.id);
    snprintf(u->path, sizeof u->path, "%s/%llu", u->svc->cfg.blob_dir, (unsigned long long)u->a.id);
    u->fs.data = u;
    u->busy = 1;
    if (uv_fs_open(&c->t->loop, &u->fs, u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, on_opened) < 0) {
        u->busy = 0;
        u->tmp[0] = '\0';
        up_fail(c, u, IY_EUNAVAIL, "the upload could not be stored");
    }
}

void uploads_head(conn *c, const http_request *head)
{
    service *svc = svc_of(c);
    iy_str auth = head->authorization;
    const char *why = api_auth_problem(auth);
    if (why) {
        up_fail(c, NULL, IY_EUNAUTH, why);
        return;
    }
    char raw[1024];
    int rc = http_query_get(head->query, "name", raw, sizeof raw);
    if (rc < 0) {
        up_fail(c, NULL, IY_EINVAL, "name must be a file name of at most 1,000 bytes");
        return;
    }
    upload *u = iy_calloc(1, sizeof *u);
    u->t = c->t;
    u->conn_id = c->id;
    u->svc = svc;
    u->fd = -1;
    media_safe_name(rc == 1 ? raw : "", rc == 1 ? strlen(raw) : 0, u->a.name, sizeof u->a.name);
    auth_token_hash(auth.ptr + 7, auth.len - 7, u->token);
    dbq_job_init(&u->j, DBQ_RUN);
    u->j.run = up_auth_run;
    u->j.done = up_auth_done;
    u->j.free = up_noop_free;
    u->j.origin = c->t;
    u->busy = 1;
    c->http_busy = 1;
    conn_pause(c);
    if (dbq_submit(svc->dbq, &u->j) != 0) {
        u->busy = 0;
        up_fail(c, u, IY_EUNAVAIL, "server is shutting down");
    }
}

/* Thread pool: make the blob durable and final, and its thumbnail. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void up_work(uv_work_t *w)
{
    upload *u = w->data;
    u->work_rc = 0;
    if (fsync(u->fd) != 0) u->work_rc = errno;
    close(u->fd);
    u->fd = -1;
    if (u->work_rc) return;
    const char *type = media_sniff(u->head, u->headlen);
    snprintf(u->a.type, sizeof u->a.type, "%s", type);
    if (rename(u->tmp, u->path) != 0) {
        u->work_rc = errno;
        return;
    }
    u->tmp[0] = '\0';
    if (media_is_image(u->a.type) && media_thumb_init() == 0) {
        uint8_t *jpeg = NULL;
        size_t jl = 0;
        if (media_thumb_file(u->path, THUMB_SIDE, &jpeg, &jl) == 0) {
            char tp[4300], fp[4300];
            snprintf(tp, sizeof tp, "%s/tmp/%llu.thumb", u->svc->cfg.blob_dir, (unsigned long long)u->a.id);
            snprintf(fp, sizeof fp, "%s.thumb", u->path);
            int fd = open(tp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            int ok = fd >= 0 && write(fd, jpeg, jl) == (ssize_t)jl && fsync(fd) == 0;
            if (fd >= 0) close(fd);
            if (ok && rename(tp, fp) == 0) u->a.thumb = 1;
            else unlink(tp);
        }
        iy_free(jpeg);
        media_thumb_thread_end();
    }
    if (fsync_dir(u->svc->cfg.blob_dir) != 0) u->work_rc = errno;
}

static void up_record_run(store *s, dbq_job *j)
{
    upload *u = (upload *)j;
    j->err = store_attachment_put(s, &u->a);
}

/* Removes the final blob of an upload that will not get its record. */
static void up_unlink_final(upload *u)
{
    unlink(u->path);
    if (u->a.thumb) {
        char fp[4300];
        snprintf(fp, sizeof fp, "%s.thumb", u->path);
        unlink(fp);
    }
}

static void up_record_done(dbq_job *j)
{
    upload *u = (upload *)j;
    u->busy = 0;
    conn *c = up_conn(u);
    if (j->err) up_unlink_final(u);
    if (!c) {
        up_free(u);
        return;
    }
    if (j->err) {
        up_fail(c, u, IY_EUNAVAIL, "the upload could not be stored, retry");
        return;
    }
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "{\"attachment\":");
    proto_write_attachment(&b, u->a.id, u->a.name, u->a.type, u->a.size, u->a.thumb);
    iy_buf_putc(&b, '}');
    c->http->sink = NULL;
    c->http->stream = NULL;
    up_free(u);
    conn_http_respond(c, 201, "application/json", b.data, b.len);
    iy_buf_free(&b);
}

static void up_after_work(uv_work_t *w, int status)
{
    upload *u = w->data;
    u->busy = 0;
    conn *c = up_conn(u);
    if (status != 0 || u->work_rc) {
        if (u->work_rc) iy_log_error("upload: storing %s failed: %s", u->path, strerror(u->work_rc));
        if (!u->tmp[0]) up_unlink_final(u);
        if (c) up_fail(c, u, IY_EUNAVAIL, "the upload could not be stored");
        else up_free(u);
        return;
    }
    if (!c) {
        up_unlink_final(u);
        up_free(u);
        return;
    }
    u->a.size = u->off;
    u->a.created_ms = (int64_t)now_ms();
    dbq_job_init(&u->j, DBQ_RUN);
    u->j.run = up_record_run;
    u->j.done = up_record_done;
    u->j.free = up_noop_free;
    u->j.origin = c->t;
    u->busy = 1;
    if (dbq_submit(u->svc->dbq, &u->j) != 0) {
        u->busy = 0;
        up_unlink_final(u);
        up_fail(c, u, IY_EUNAVAIL, "server is shutting down");
    }
}

static void up_finish(upload *u)
{
    conn *c = up_conn(u);
    if (!c) {
        up_free(u);
        return;
    }
    if (u->off == 0) {
        up_fail(c, u, IY_EINVAL, "the upload is empty");
        return;
    }
    u->work.data = u;
    u->busy = 1;
    if (uv_queue_work(&c->t->loop, &u->work, up_work, up_after_work) != 0) {
        u->busy = 0;
        up_fail(c, u, IY_EUNAVAIL, "the upload could not be stored");
    }
}

void uploads_complete(conn *c, const http_request *req)
{
    upload *u = c->http->sink == &up_sink ? c->http->stream : NULL;
    if (!u && (req->authorization.len <= 7 || strncasecmp(req->authorization.ptr, "Bearer ", 7) != 0)) {
        conn_http_error(c, IY_EUNAUTH, "a bearer token is needed");
        return;
    }
    if (!req->streamed || !u) {
        conn_http_error(c, IY_EINVAL, "the upload is empty: send the file's bytes as the body");
        return;
    }
    u->complete = 1;
    if (!u->busy && !u->next.len) up_finish(u);
}

/* ---- downloads ------------------------------------------------------------------ */

typedef struct download {
    api_job a;                  /* first: the reader job (auth, record, membership) */
    int thumb;
    iy_attachment at;
    uv_fs_t fs;
    uv_file fd;
    int busy, gone;
    uint64_t off;
    char *piece;
    char path[4300];
} download;

static void dl_close(download *d)
{
    if (d->fd >= 0) {
        uv_fs_t r;
        uv_fs_close(NULL, &r, d->fd, NULL);
        uv_fs_req_cleanup(&r);
        d->fd = -1;
    }
    iy_free(d->piece);
    d->piece = NULL;
}

static void dl_free_fn(api_job *a) { dl_close((download *)a); }

static void dl_abort(conn *c)
{
    download *d = c->http->stream;
    d->gone = 1;
    if (!d->busy) api_job_drop(&d->a);
}

static const net_sink dl_sink = { NULL, dl_abort };

static void dl_next(conn *c);

static void on_read_piece(uv_fs_t *r)
{
    download *d = r->data;
    d->busy = 0;
    ssize_t n = r->result;
    uv_fs_req_cleanup(r);
    conn *c = d->gone ? NULL : iothread_conn(d->a.t, d->a.conn_id);
    if (!c || c->closing) {
        api_job_drop(&d->a);
        return;
    }
    if (n <= 0) {   /* the file is shorter than its record: cut the answer off */
        iy_log_error("attachment %llu: reading %s failed", (unsigned long long)d->at.id, d->path);
        c->http->sink = NULL;
        c->http->stream = NULL;
        api_job_drop(&d->a);
        conn_close(c);
        return;
    }
    d->off += (uint64_t)n;
    conn_write(c, d->piece, (size_t)n);
    conn_on_drained(c, dl_next);
}

static void dl_next(conn *c)
{
    download *d = c->http->stream;
    if (d->off >= d->at.size) {
        c->http->sink = NULL;
        c->http->stream = NULL;
        api_job_drop(&d->a);
        conn_http_done(c);
        return;
    }
    uv_buf_t b = uv_buf_init(d->piece, DOWNLOAD_PIECE);
    d->fs.data = d;
    d->busy = 1;
    if (uv_fs_read(&c->t->loop, &d->fs, d->fd, &b, 1, (int64_t)d->off, on_read_piece) < 0) {
        d->busy = 0;
        c->http->sink = NULL;
        c->http->stream = NULL;
        api_job_drop(&d->a);
        conn_close(c);
    }
}

static void dl_opened(uv_fs_t *r)
{
    download *d = r->data;
    d->busy = 0;
    int fd = (int)r->result;
    uv_fs_req_cleanup(r);
    if (fd >= 0) d->fd = fd;
    conn *c = iothread_conn(d->a.t, d->a.conn_id);
    if (!c || c->closing) {
        api_job_drop(&d->a);
        return;
    }
    uint64_t size = d->at.size;
    if (fd >= 0 && d->thumb) {
        uv_fs_t st;
        if (uv_fs_fstat(NULL, &st, fd, NULL) == 0) size = st.statbuf.st_size;
        else fd = -1;
        uv_fs_req_cleanup(&st);
    }
    if (fd < 0) {
        iy_log_error("attachment %llu: its blob %s is missing", (unsigned long long)d->at.id, d->path);
        api_job_drop(&d->a);
        conn_http_error(c, IY_ENOTFOUND, "the attachment's bytes are missing");
        return;
    }
    iy_buf extra = { 0 };
    iy_buf_append_str(&extra, "Content-Disposition: ");
    media_content_disposition(&extra, d->at.name, d->thumb || media_is_image(d->at.type));
    /* (X-Content-Type-Options: nosniff and Cache-Control: no-store are on every answer.) A
     * sandbox CSP: even a file a browser renders by itself runs nothing. */
    iy_buf_append_str(&extra, "\r\nContent-Security-Policy: sandbox; default-src 'none'\r\n");
    const char *type = d->thumb ? "image/jpeg" : strcmp(d->at.type, "text/plain") == 0 ? "text/plain; charset=utf-8"
                                                                                       : d->at.type;
    conn_http_respond_head(c, 200, type, iy_buf_cstr(&extra), size, &dl_sink, d);
    iy_buf_free(&extra);
    d->at.size = size;
    if (c->head_only) d->off = size;   /* HEAD: the head above is the whole answer */
    d->thumb = 0;   /* from here a thumb streams like any blob of `size` bytes */
    d->piece = iy_malloc(DOWNLOAD_PIECE);
    dl_next(c);
}

/* Reader thread: who may see it. */
static void dl_read(store_reader *r, dbq_job *j)
{
    download *d = (download *)j;
    api_job *a = &d->a;
    int rc = store_reader_session(r, a->token, &a->user, a->device);
    if (rc == IY_ENOTFOUND) { api_fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
    if (rc) { api_fail(a, rc, "storage error"); return; }
    rc = store_reader_attachment(r, a->id, &d->at);
    if (rc == IY_ENOTFOUND) { api_fail(a, IY_ENOTFOUND, "no such attachment"); return; }
    if (rc) { api_fail(a, rc, "storage error"); return; }
    if (d->at.channel == IY_ATTACH_GONE) {
        api_fail(a, IY_ENOTFOUND, "the message that carried this attachment was deleted");
        return;
    }
    if (d->at.channel == 0) rc = d->at.uploader == a->user ? 0 : IY_EFORBIDDEN;
    else rc = store_reader_is_member(r, d->at.channel, a->user);
    if (rc == IY_EFORBIDDEN || rc == IY_ENOTFOUND) {
        api_fail(a, IY_EFORBIDDEN, "only the members of its conversation may fetch it");
        return;
    }
    if (rc) { api_fail(a, rc, "storage error"); return; }
    if (d->thumb && !d->at.thumb) api_fail(a, IY_ENOTFOUND, "this attachment has no thumbnail");
}

static void dl_then(conn *c, api_job *a)
{
    download *d = (download *)a;
    const char *dir = a->svc->cfg.blob_dir;
    snprintf(d->path, sizeof d->path, "%s/%llu%s", dir, (unsigned long long)d->at.id, d->thumb ? ".thumb" : "");
    d->fs.data = d;
    d->busy = 1;
    if (uv_fs_open(&c->t->loop, &d->fs, d->path, O_RDONLY | O_CLOEXEC, 0, dl_opened) < 0) {
        d->busy = 0;
        api_job_drop(a);
        conn_http_error(c, IY_EUNAVAIL, "the attachment cannot be read now");
    }
}

void uploads_download(conn *c, const http_request *req, uint64_t id, int thumb)
{
    download *d = api_job_new(c, req, sizeof *d, NULL, 1, dl_free_fn);
    d->a.j.read = dl_read;
    d->a.then = dl_then;
    d->a.id = id;
    d->thumb = thumb;
    d->fd = -1;
    api_submit_read(c, &d->a);
}
