/* rocks_push.c — push subscriptions and the durable push outbox of the
 * RocksDB backend (store.h, "push"), on the primitives of rocks_int.h.
 *
 *   key                                   value
 *   'S' sub                               user u64, kind u8, dlen u8, device, ulen u16, url,
 *                                         plen u8, p256dh, alen u8, auth, slen u8, secret,
 *                                         [session 32 bytes: the token hash of the session that
 *                                         made it; absent in subscriptions of older versions]
 *   'U' user                              n u8, sub u64 * n (ascending): the user's subscriptions
 *   'P' sub channel                       note (below): the pending notification
 *   'Q' due sub channel                   (empty): the due index, oldest due first
 *   'D' sub channel message_id            note: a dead letter
 *   'N'                                   pending u64, dead u64
 *
 *   note = user u64, message_id u64, from u64, created_ms i64, due_ms i64,
 *          attempts u32, plen u16, preview, [leased u8]
 *
 * leased (absent in notes of older versions: 0) marks a note taken by the
 * push worker and not settled yet: after a restart nothing is in flight,
 * so store_push_take with `all` takes leased notes at once, whatever their
 * lease's expiry, and leaves notes waiting for a retry alone.
 *
 * Integers are big-endian; due (an i64) is stored with its sign bit flipped
 * so that byte order is numeric order also for negative values.
 *
 * Subscriptions. They change only by synced single writes outside batches.
 * The 'U' record of a user lists all of them, so rocks_push_queue costs one
 * point read per recipient, and a user without subscriptions (no 'U' record)
 * is one bloom-filtered miss. (One record rather than a 'U' user+sub index:
 * no iterator on the message path, and the 32-per-user limit is the same
 * read.) A subscription id comes from the id generator; since that
 * generator's newest id is persisted only by the next message or user
 * write, create checks that the id is unused.
 *
 * The outbox. 'P' sub+channel holds at most one note per (subscription,
 * channel): a newer message collapses into it. 'Q' indexes the 'P' records
 * by due; every write of a 'P' record that changes its due deletes the old
 * 'Q' key and puts the new one in the same write. rocks_push_queue writes
 * only into a round's write batch (reading through the round's overlay, so
 * a note queued earlier in the same round collapses too): notes commit or
 * vanish with their message.
 * store_push_take leases with one unsynced write (a lease lost in a crash
 * only makes the retry earlier); store_push_done writes with sync.
 *
 * Counters. 'N' holds the pending and dead counts and is updated in the same
 * write (or batch) as the notes it counts, so a failed or dropped batch
 * drops its increments too and the counts stay exact across crashes;
 * store_push_counts is one point read. (In-memory counters would need to
 * learn whether a batch committed, which this file cannot see.)
 *
 * The store is single-threaded and rounds never interleave with the other
 * calls, so the committed reads here see everything. Leases need no owner
 * here: one node owns an embedded store. take still tolerates a 'Q' key whose 'P'
 * disagrees (it deletes the stale key), and counters never go below 0. */
#include "rocks_int.h"
#include "rocks_enc.h"
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"

enum { K_SUB = 'S', K_USUBS = 'U', K_PEND = 'P', K_DUE = 'Q', K_DEAD = 'D', K_COUNT = 'N' };

#define SUBS_MAX IY_PUSH_SUBS_MAX
#define PREVIEW_CP 100
#define PREVIEW_MAX 400
#define NOTE_FIXED (8 * 5 + 4 + 2 + 1)
#define NOTE_MAX (NOTE_FIXED + PREVIEW_MAX)
#define SUB_MAX (8 + 1 + 1 + IY_DEVICE_MAX + 2 + IY_PUSH_URL_MAX + 1 + 127 + 1 + 63 + 1 + 64 + 32)
#define USUBS_MAX (1 + 8 * SUBS_MAX)

/* ---- encoding ---------------------------------------------------------- */

static uint64_t due_enc(int64_t due) { return (uint64_t)due ^ (UINT64_C(1) << 63); }
static int64_t due_dec(uint64_t v) { return (int64_t)(v ^ (UINT64_C(1) << 63)); }

static size_t due_key(uint8_t *k, int64_t due, uint64_t sub, uint64_t channel)
{
    return key3(k, K_DUE, due_enc(due), sub, channel);
}

static int corrupt(const char *what)
{
    iy_log_error("store: corrupt %s record", what);
    return IY_EIO;
}

static int rerr(char *err, const char *what)
{
    iy_log_error("store: push %s: %s", what, err);
    rocksdb_free(err);
    return IY_EIO;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- notes ------------------------------------------------------------- */

static size_t note_encode(uint8_t *v, const iy_push_note *n, int leased)
{
    size_t pl = strnlen(n->preview, PREVIEW_MAX);
    wr w = { v, 0 };
    wr_u64(&w, n->user);
    wr_u64(&w, n->message_id);
    wr_u64(&w, n->from);
    wr_u64(&w, (uint64_t)n->created_ms);
    wr_u64(&w, (uint64_t)n->due_ms);
    wr_u32(&w, n->attempts);
    wr_u16(&w, (unsigned)pl);
    wr_mem(&w, n->preview, pl);
    wr_u8(&w, leased ? 1 : 0);
    return w.n;
}

/* Decodes a note value; sub and channel come from the key. 0 or IY_EIO. */
/* leased (may be NULL) gets the note's lease mark. */
static int note_decode(const char *v, size_t vl, uint64_t sub, uint64_t channel, iy_push_note *n,
                       int *leased)
{
    rd r = { (const uint8_t *)v, vl, 0 };
    memset(n, 0, sizeof *n);
    n->sub = sub;
    n->channel = channel;
    n->user = rd_u64(&r);
    n->message_id = rd_u64(&r);
    n->from = rd_u64(&r);
    n->created_ms = (int64_t)rd_u64(&r);
    n->due_ms = (int64_t)rd_u64(&r);
    n->attempts = rd_u32(&r);
    rd_str(&r, rd_u16(&r), n->preview, PREVIEW_MAX);
    unsigned mark = r.n ? rd_u8(&r) : 0;
    if (r.bad || r.n || mark > 1) return corrupt("push note");
    if (leased) *leased = (int)mark;
    return 0;
}

/* ---- counters ---------------------------------------------------------- */

static int counts_decode(const char *v, size_t vl, uint64_t *pending, uint64_t *dead)
{
    if (vl != 16) return corrupt("push counters");
    *pending = get64((const uint8_t *)v);
    *dead = get64((const uint8_t *)v + 8);
    return 0;
}

static void counts_encode(uint8_t v[16], uint64_t pending, uint64_t dead)
{
    put64(v, pending);
    put64(v + 8, dead);
}

/* Applies deltas to a count, never below 0 (a lost record must not wrap it). */
static uint64_t add_delta(uint64_t v, int64_t d)
{
    if (d < 0 && (uint64_t)-d > v) return 0;
    return v + (uint64_t)d;
}

/* The committed counters: 0, IY_EIO. */
static int counts_load(store *s, uint64_t *pending, uint64_t *dead)
{
    uint8_t k = K_COUNT;
    char *v;
    size_t vl;
    *pending = *dead = 0;
    int rc = rocks_get_copy((rocks *)s, &k, 1, &v, &vl);
    if (rc == IY_ENOTFOUND) return 0;
    if (rc) return rc;
    rc = counts_decode(v, vl, pending, dead);
    iy_free(v);
    return rc;
}

/* Puts the committed counters plus deltas into wb. 0, IY_EIO. */
static int counts_add(store *s, rocksdb_writebatch_t *wb, int64_t dpending, int64_t ddead)
{
    uint64_t p, d;
    int rc = counts_load(s, &p, &d);
    if (rc) return rc;
    uint8_t k = K_COUNT, v[16];
    counts_encode(v, add_delta(p, dpending), add_delta(d, ddead));
    rocksdb_writebatch_put(wb, (const char *)&k, 1, (const char *)v, 16);
    return 0;
}

/* Writes wb (synced or not) and destroys it. 0, IY_EUNAVAIL (rocks_write_guarded). */
static int write_wb(store *s, rocksdb_writebatch_t *wb, int sync)
{
    return rocks_write((rocks *)s, wb, sync);
}

/* ---- subscriptions ----------------------------------------------------- */

/* The subscriptions of user (committed): 0 with ids[*n], IY_EIO. */
static int usubs_load(store *s, uint64_t user, uint64_t ids[SUBS_MAX], size_t *n)
{
    uint8_t k[9];
    char *v;
    size_t vl;
    *n = 0;
    int rc = rocks_get_copy((rocks *)s, k, key1(k, K_USUBS, user), &v, &vl);
    if (rc == IY_ENOTFOUND) return 0;
    if (rc) return rc;
    const uint8_t *p = (const uint8_t *)v;
    if (vl < 1 || p[0] > SUBS_MAX || vl != 1 + 8 * (size_t)p[0]) {
        iy_free(v);
        return corrupt("push user");
    }
    *n = p[0];
    for (size_t i = 0; i < *n; i++) ids[i] = get64(p + 1 + 8 * i);
    iy_free(v);
    return 0;
}

/* Puts (n > 0) or deletes the 'U' record of user into wb. */
static void usubs_put(rocksdb_writebatch_t *wb, uint64_t user, const uint64_t *ids, size_t n)
{
    uint8_t k[9], v[USUBS_MAX];
    key1(k, K_USUBS, user);
    if (n == 0) {
        rocksdb_writebatch_delete(wb, (const char *)k, 9);
        return;
    }
    v[0] = (uint8_t)n;
    for (size_t i = 0; i < n; i++) put64(v + 1 + 8 * i, ids[i]);
    rocksdb_writebatch_put(wb, (const char *)k, 9, (const char *)v, 1 + 8 * n);
}

/* Length of a NUL-terminated field of a fixed array, or SIZE_MAX if it has no NUL. */
static size_t field_len(const char *f, size_t size)
{
    size_t n = strnlen(f, size);
    return n < size ? n : SIZE_MAX;
}

int rocks_push_sub_create(store *s, iy_push_sub *sub)
{
    size_t dl = field_len(sub->device, sizeof sub->device);
    size_t ul = field_len(sub->url, sizeof sub->url);
    size_t pl = field_len(sub->p256dh, sizeof sub->p256dh);
    size_t al = field_len(sub->auth, sizeof sub->auth);
    size_t sl = field_len(sub->secret, sizeof sub->secret);
    if (dl == SIZE_MAX || ul == SIZE_MAX || pl == SIZE_MAX || al == SIZE_MAX || sl == SIZE_MAX ||
        (sub->kind != IY_PUSH_WEBHOOK && sub->kind != IY_PUSH_WEBPUSH))
        return IY_EINVAL;

    uint64_t ids[SUBS_MAX + 1];
    size_t n;
    int rc = usubs_load(s, sub->user, ids, &n);
    if (rc) return rc;
    if (n >= SUBS_MAX) return IY_ETOOBIG;

    /* A fresh id; the generator's newest id may not be persisted yet, so
     * after a restart with the clock set back it could repeat one. */
    uint8_t k[9];
    uint64_t id;
    for (;;) {
        id = store_new_id(s);
        char *v;
        size_t vl;
        rc = rocks_get_copy((rocks *)s, k, key1(k, K_SUB, id), &v, &vl);
        if (rc == IY_ENOTFOUND) break;
        if (rc) return rc;
        iy_free(v);
    }

    uint8_t val[SUB_MAX];
    wr w = { val, 0 };
    wr_u64(&w, sub->user);
    wr_u8(&w, (unsigned)sub->kind);
    wr_u8(&w, (unsigned)dl);
    wr_mem(&w, sub->device, dl);
    wr_u16(&w, (unsigned)ul);
    wr_mem(&w, sub->url, ul);
    wr_u8(&w, (unsigned)pl);
    wr_mem(&w, sub->p256dh, pl);
    wr_u8(&w, (unsigned)al);
    wr_mem(&w, sub->auth, al);
    wr_u8(&w, (unsigned)sl);
    wr_mem(&w, sub->secret, sl);
    wr_mem(&w, sub->session, sizeof sub->session);

    size_t i = n;   /* ids stay ascending; a new id is normally the largest */
    while (i > 0 && ids[i - 1] > id) {
        ids[i] = ids[i - 1];
        i--;
    }
    ids[i] = id;

    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, 9, (const char *)val, w.n);
    usubs_put(wb, sub->user, ids, n + 1);
    if ((rc = write_wb(s, wb, 1)) != 0) return rc;
    sub->id = id;
    return 0;
}

int rocks_push_sub_get(store *s, uint64_t id, iy_push_sub *out)
{
    uint8_t k[9];
    char *v;
    size_t vl;
    int rc = rocks_get_copy((rocks *)s, k, key1(k, K_SUB, id), &v, &vl);
    if (rc) return rc;
    rd r = { (const uint8_t *)v, vl, 0 };
    memset(out, 0, sizeof *out);
    out->id = id;
    out->user = rd_u64(&r);
    out->kind = (int)rd_u8(&r);
    rd_str(&r, rd_u8(&r), out->device, IY_DEVICE_MAX);
    rd_str(&r, rd_u16(&r), out->url, IY_PUSH_URL_MAX);
    rd_str(&r, rd_u8(&r), out->p256dh, sizeof out->p256dh - 1);
    rd_str(&r, rd_u8(&r), out->auth, sizeof out->auth - 1);
    rd_str(&r, rd_u8(&r), out->secret, sizeof out->secret - 1);
    if (r.n == sizeof out->session) memcpy(out->session, rd_mem(&r, sizeof out->session), sizeof out->session);
    iy_free(v);
    if (r.bad || r.n) return corrupt("push subscription");
    return 0;
}

/* An iterator over [lo, hi) with its own read options (destroyed with it). */
typedef struct scan {
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
} scan;

static void scan_open(store *s, scan *sc, const uint8_t *lo, size_t lol, const uint8_t *hi,
                      size_t hil)
{
    sc->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(sc->ro, (const char *)lo, lol);
    rocksdb_readoptions_set_iterate_upper_bound(sc->ro, (const char *)hi, hil);
    sc->it = rocksdb_create_iterator(((rocks *)s)->db, sc->ro);
    rocksdb_iter_seek(sc->it, (const char *)lo, lol);
}

static int scan_close(scan *sc)
{
    char *err = NULL;
    rocksdb_iter_get_error(sc->it, &err);
    rocksdb_iter_destroy(sc->it);
    rocksdb_readoptions_destroy(sc->ro);
    return err ? rerr(err, "scan") : 0;
}

/* Deletes subscription id (its record and its pending notes with their due
 * index entries; dead letters stay) into wb; *removed counts the notes. */
static int sub_delete_wb(store *s, rocksdb_writebatch_t *wb, uint64_t id, int64_t *removed)
{
    uint8_t k[25];
    rocksdb_writebatch_delete(wb, (const char *)k, key1(k, K_SUB, id));
    uint8_t lo[9], hi[9];
    key1(lo, K_PEND, id);
    if (id == UINT64_MAX) hi[0] = K_PEND + 1;
    else key1(hi, K_PEND, id + 1);
    scan sc;
    scan_open(s, &sc, lo, 9, hi, id == UINT64_MAX ? 1 : 9);
    int rc = 0;
    for (; rc == 0 && rocksdb_iter_valid(sc.it); rocksdb_iter_next(sc.it)) {
        size_t kl, vl;
        const uint8_t *pk = (const uint8_t *)rocksdb_iter_key(sc.it, &kl);
        const char *v = rocksdb_iter_value(sc.it, &vl);
        iy_push_note note;
        if (kl != 17) {
            rc = corrupt("push note key");
            break;
        }
        if ((rc = note_decode(v, vl, id, get64(pk + 9), &note, NULL)) != 0) break;
        rocksdb_writebatch_delete(wb, (const char *)pk, kl);
        rocksdb_writebatch_delete(wb, (const char *)k, due_key(k, note.due_ms, id, note.channel));
        (*removed)++;
    }
    int src = scan_close(&sc);
    return rc ? rc : src;
}

/* Deletes the subscriptions of user that keep[] does not mark, in wb. */
static int subs_delete_wb(store *s, rocksdb_writebatch_t *wb, uint64_t user, const uint64_t *ids,
                          size_t n, const int *gone)
{
    uint64_t keep[SUBS_MAX];
    size_t m = 0;
    int64_t removed = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (gone[i]) rc = sub_delete_wb(s, wb, ids[i], &removed);
        else keep[m++] = ids[i];
    }
    if (rc == 0 && m != n) usubs_put(wb, user, keep, m);
    if (rc == 0 && removed) rc = counts_add(s, wb, -removed, 0);
    return rc;
}

int rocks_push_sub_delete(store *s, uint64_t user, uint64_t id)
{
    iy_push_sub *sub = iy_malloc(sizeof *sub);
    int rc = rocks_push_sub_get(s, id, sub);
    uint64_t owner = sub->user;
    iy_free(sub);
    if (rc) return rc;
    if (owner != user) return IY_ENOTFOUND;

    uint64_t ids[SUBS_MAX];
    int gone[SUBS_MAX] = { 0 };
    size_t n;
    if ((rc = usubs_load(s, user, ids, &n)) != 0) return rc;
    int listed = 0;
    for (size_t i = 0; i < n; i++) listed |= gone[i] = ids[i] == id;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (listed) {
        rc = subs_delete_wb(s, wb, user, ids, n, gone);
    } else {   /* a record the user's list lost: the record and its notes still go */
        int64_t removed = 0;
        rc = sub_delete_wb(s, wb, id, &removed);
        if (rc == 0 && removed) rc = counts_add(s, wb, -removed, 0);
    }
    if (rc) {
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    return write_wb(s, wb, 1);
}

int rocks_push_subs_of_session_wb(store *s, rocksdb_writebatch_t *wb, uint64_t user,
                                  const uint8_t token_hash[32])
{
    uint64_t ids[SUBS_MAX];
    int gone[SUBS_MAX] = { 0 };
    size_t n;
    int rc = usubs_load(s, user, ids, &n);
    if (rc || n == 0) return rc;
    iy_push_sub *sub = iy_malloc(sizeof *sub);
    int any = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = rocks_push_sub_get(s, ids[i], sub);
        if (rc == IY_ENOTFOUND) {
            rc = 0;
            continue;
        }
        any |= gone[i] = rc == 0 && memcmp(sub->session, token_hash, 32) == 0;
    }
    iy_free(sub);
    if (rc || !any) return rc;
    return subs_delete_wb(s, wb, user, ids, n, gone);
}

/* ---- the outbox ------------------------------------------------------ */

/* The round's own writes that a later note of the same round reads back:
 * into the write batch and the overlay (rocks.ovl). */
static void ovl_put(rocks *rs, rocksdb_writebatch_t *wb, const void *k, size_t kl, const void *v, size_t vl)
{
    rocksdb_writebatch_put(wb, k, kl, v, vl);
    iy_kv_put(&rs->ovl, k, kl, v, vl);
}

/* A key as the round sees it: its overlay, else committed. 0 (iy_free), IY_ENOTFOUND, IY_EIO. */
static int ovl_get(rocks *rs, const void *k, size_t kl, char **v, size_t *vl)
{
    const uint8_t *p;
    size_t n;
    int f = iy_kv_get(&rs->ovl, k, kl, &p, &n);
    if (f == 0) return rocks_get_copy(rs, k, kl, v, vl);
    if (f == 2) return IY_ENOTFOUND;
    *v = iy_malloc(n ? n : 1);
    if (n) memcpy(*v, p, n);
    *vl = n;
    return 0;
}

int rocks_push_queue(rocks *rs, rocksdb_writebatch_t *wb, uint64_t user, const iy_msg *m,
                     const char *text, size_t text_len)
{
    store *s = (store *)rs;
    uint64_t ids[SUBS_MAX];
    size_t n;
    int rc = usubs_load(s, user, ids, &n);
    if (rc || n == 0) return rc;

    iy_push_note note;
    memset(&note, 0, sizeof note);
    store_push_preview(note.preview, text ? text : "", text ? text_len : 0, m->atts);
    int64_t now = wall_ms();
    uint64_t added = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t pk[17], qk[25], v[NOTE_MAX];
        size_t pkl = key2(pk, K_PEND, ids[i], m->channel);
        char *old;
        size_t ol;
        rc = ovl_get(rs, pk, pkl, &old, &ol);
        int fresh = rc == IY_ENOTFOUND, leased = 0;
        if (rc == 0) {
            /* Collapse: the newest message replaces the content; the schedule
             * stays (created_ms, attempts, due_ms). A note waiting for a retry
             * keeps its backoff and one in flight keeps its lease, so a burst
             * to a failing receiver never becomes a burst of requests; a note
             * delivered meanwhile is sent again with the newer content
             * (store_push_done). */
            iy_push_note cur;
            rc = note_decode(old, ol, ids[i], m->channel, &cur, &leased);
            iy_free(old);
            if (rc) return rc;
            note.created_ms = cur.created_ms;
            note.attempts = cur.attempts;
            note.due_ms = cur.due_ms;
        } else if (rc == IY_ENOTFOUND) {
            note.created_ms = now;
            note.attempts = 0;
            note.due_ms = now;
            added++;
        } else {
            return rc;
        }
        note.sub = ids[i];
        note.user = user;
        note.channel = m->channel;
        note.message_id = m->id;
        note.from = m->from;
        ovl_put(rs, wb, pk, pkl, v, note_encode(v, &note, leased));
        if (fresh) ovl_put(rs, wb, qk, due_key(qk, now, ids[i], m->channel), "", 0);
    }
    if (added) {
        uint8_t k = K_COUNT, cv[16];
        uint64_t p = 0, d = 0;
        char *v;
        size_t vl;
        rc = ovl_get(rs, &k, 1, &v, &vl);
        if (rc == 0) {
            rc = counts_decode(v, vl, &p, &d);
            iy_free(v);
            if (rc) return rc;
        } else if (rc != IY_ENOTFOUND) {
            return rc;
        }
        counts_encode(cv, p + added, d);
        ovl_put(rs, wb, &k, 1, cv, 16);
    }
    return 0;
}

/* Reads the committed note of (sub, channel): 0, IY_ENOTFOUND, IY_EIO. */
static int note_load(store *s, uint64_t sub, uint64_t channel, iy_push_note *out, int *leased)
{
    uint8_t k[17];
    char *v;
    size_t vl;
    int rc = rocks_get_copy((rocks *)s, k, key2(k, K_PEND, sub, channel), &v, &vl);
    if (rc) return rc;
    rc = note_decode(v, vl, sub, channel, out, leased);
    iy_free(v);
    return rc;
}

/* Rewrites note n (whose index entry is at old_due) with its current due_ms. */
static void note_move(rocksdb_writebatch_t *wb, const iy_push_note *n, int64_t old_due, int leased)
{
    uint8_t k[25], v[NOTE_MAX];
    rocksdb_writebatch_put(wb, (const char *)k, key2(k, K_PEND, n->sub, n->channel),
                           (const char *)v, note_encode(v, n, leased));
    rocksdb_writebatch_delete(wb, (const char *)k, due_key(k, old_due, n->sub, n->channel));
    rocksdb_writebatch_put(wb, (const char *)k, due_key(k, n->due_ms, n->sub, n->channel), "", 0);
}

typedef struct due_ref {
    int64_t due;
    uint64_t sub, channel;
} due_ref;

/* How many due-index entries a take with `all` looks at past the due ones
 * (notes waiting for a retry), looking for this node's leased notes. */
#define TAKE_ALL_SCAN 100000

int rocks_push_take(store *s, int64_t now, int64_t lease_ms, int all, size_t max, iy_push_note **out,
                    size_t *n)
{
    *out = NULL;
    *n = 0;
    if (max == 0) return 0;

    /* The due index entries first (due <= now; with `all`, any), then the notes. */
    uint8_t lo[1] = { K_DUE }, hi[25];
    size_t hil;
    if (now == INT64_MAX || all) {
        hi[0] = K_DUE + 1;
        hil = 1;
    } else {
        hil = due_key(hi, now + 1, 0, 0);
    }
    size_t scan_max = all ? TAKE_ALL_SCAN : max;
    due_ref *refs = NULL;
    size_t nref = 0, cap = 0;
    scan sc;
    scan_open(s, &sc, lo, 1, hi, hil);
    int rc = 0;
    for (; nref < scan_max && rocksdb_iter_valid(sc.it); rocksdb_iter_next(sc.it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(sc.it, &kl);
        if (kl != 25) {
            rc = corrupt("push due key");
            break;
        }
        if (nref == cap) {
            cap = cap ? cap * 2 : (max < 64 ? max : 64);
            refs = iy_realloc(refs, cap * sizeof *refs);
        }
        refs[nref++] = (due_ref){ due_dec(get64(k + 1)), get64(k + 9), get64(k + 17) };
    }
    int src = scan_close(&sc);
    if (rc == 0) rc = src;
    if (rc || nref == 0) {
        iy_free(refs);
        return rc;
    }

    iy_push_note *v = iy_malloc((max < nref ? max : nref) * sizeof *v);
    size_t nv = 0;
    int64_t until = lease_ms > 0 && now > INT64_MAX - lease_ms ? INT64_MAX : now + lease_ms;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < nref && nv < max && rc == 0; i++) {
        iy_push_note *note = &v[nv];
        int leased = 0;
        rc = note_load(s, refs[i].sub, refs[i].channel, note, &leased);
        if (rc == IY_ENOTFOUND || (rc == 0 && note->due_ms != refs[i].due)) {
            /* A stale index entry (its note is gone or moved): drop it. */
            uint8_t k[25];
            rocksdb_writebatch_delete(wb, (const char *)k,
                                      due_key(k, refs[i].due, refs[i].sub, refs[i].channel));
            rc = 0;
            continue;
        }
        if (rc) break;
        if (note->due_ms > now && !(all && leased)) continue;   /* waiting for its retry */
        note->due_ms = until;
        note_move(wb, note, refs[i].due, 1);
        nv++;
    }
    iy_free(refs);
    if (rc == 0) rc = write_wb(s, wb, 0);
    else rocksdb_writebatch_destroy(wb);
    if (rc || nv == 0) {
        iy_free(v);
        return rc;
    }
    *out = v;
    *n = nv;
    return 0;
}

int rocks_push_done(store *s, const iy_push_note *note, int done, int dead, int64_t retry_ms)
{
    iy_push_note cur;
    int rc = note_load(s, note->sub, note->channel, &cur, NULL);
    if (rc == IY_ENOTFOUND) return 0;
    if (rc) return rc;

    uint8_t k[25], v[NOTE_MAX];
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (done && cur.message_id != note->message_id) {
        /* A newer message collapsed into it while in flight: it stays, due now. */
        int64_t now = wall_ms();
        if (cur.due_ms <= now) {
            rocksdb_writebatch_destroy(wb);
            return 0;
        }
        int64_t old = cur.due_ms;
        cur.due_ms = now;
        note_move(wb, &cur, old, 0);
    } else if (done || dead) {
        rocksdb_writebatch_delete(wb, (const char *)k, key2(k, K_PEND, cur.sub, cur.channel));
        rocksdb_writebatch_delete(wb, (const char *)k, due_key(k, cur.due_ms, cur.sub, cur.channel));
        if (!done)
            rocksdb_writebatch_put(wb, (const char *)k,
                                   key3(k, K_DEAD, cur.sub, cur.channel, cur.message_id),
                                   (const char *)v, note_encode(v, &cur, 0));
        rc = counts_add(s, wb, -1, done ? 0 : 1);
    } else {
        int64_t old = cur.due_ms;
        cur.attempts++;
        cur.due_ms = retry_ms;
        note_move(wb, &cur, old, 0);
    }
    if (rc) {
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    return write_wb(s, wb, 1);
}

int rocks_push_counts(store *s, uint64_t *pending, uint64_t *dead)
{
    return counts_load(s, pending, dead);
}
