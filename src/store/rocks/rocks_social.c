/* rocks_social.c — the RocksDB backend's small records around the chat:
 * read state ('R'), friends ('F') and presence persistence ('L') (key
 * layout: the top of rocks.c). */
#include "rocks_int.h"
#include "rocks_enc.h"
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include "../../base/alloc.h"
#include "../../base/err.h"

#define kv_get(s, k, kl, val, vl) rocks_get((rocks *)(s), k, kl, val, vl)

/* ---- read state ------------------------------------------------------------- */

/* A u64 value under key k (committed state): 0 with *v (0 if absent), IY_EIO. */
static int get_u64(store *s, const uint8_t *k, size_t kl, uint64_t *v, const char *what)
{
    char *val;
    size_t vl;
    *v = 0;
    int rc = kv_get(s, k, kl, &val, &vl);
    if (rc <= 0) return rc;
    if (vl == 8) *v = get64((const uint8_t *)val);
    rocksdb_free(val);
    return vl == 8 ? 0 : rocks_corrupt(what);
}

int rocks_read_set(store *s, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now)
{
    uint8_t k[17], v[8];
    uint64_t cur;
    int rc;
    *now = 0;
    key2(k, K_READ, user, channel);
    if ((rc = get_u64(s, k, 17, &cur, "read")) != 0) return rc;
    /* Never past the channel's newest committed seq (the caller clamped
     * already, rules_read_seq): a round writes a sender's read mark to its
     * own message's seq without reading it, which is forward only because
     * of this. */
    uint64_t newest = 0;
    if ((rc = rocks_counter((rocks *)s, K_MSG, channel, &newest)) != 0) return rc;
    if (seq > newest) seq = newest;
    *now = cur;
    if (seq <= cur) return 0;   /* only forward */
    put64(v, seq);
    if ((rc = rocks_put_lazy((rocks *)s, k, 17, v, 8)) != 0) return rc;
    *now = seq;
    return 0;
}

int rocks_read_get(store *s, uint64_t user, uint64_t channel, uint64_t *seq)
{
    uint8_t k[17];
    return get_u64(s, k, key2(k, K_READ, user, channel), seq, "read");
}

/* ---- friends ------------------------------------------------------------------ */

/* The state between a and b from a's side: 0 with *state, IY_EIO. */
static int friend_load(store *s, uint64_t a, uint64_t b, int *state)
{
    uint8_t k[17];
    char *v;
    size_t vl;
    *state = IY_FRIEND_NONE;
    int rc = kv_get(s, k, key2(k, K_FRIEND, a, b), &v, &vl);
    if (rc <= 0) return rc;
    unsigned st = vl == 1 ? (uint8_t)v[0] : 0;
    rocksdb_free(v);
    if (st < IY_FRIEND_OUTGOING || st > IY_FRIEND_MUTUAL) return rocks_corrupt("friend");
    *state = (int)st;
    return 0;
}

/* Writes both sides: a's state sa and the mirrored one of b (NONE deletes). Synced. */
static int friend_write(store *s, uint64_t a, uint64_t b, int sa)
{
    static const uint8_t mirror[4] = { IY_FRIEND_NONE, IY_FRIEND_INCOMING, IY_FRIEND_OUTGOING,
                                       IY_FRIEND_MUTUAL };
    uint8_t k[17], v[2] = { (uint8_t)sa, mirror[sa] };
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (int i = 0; i < 2; i++) {
        key2(k, K_FRIEND, i ? b : a, i ? a : b);
        if (sa == IY_FRIEND_NONE) rocksdb_writebatch_delete(wb, (const char *)k, 17);
        else rocksdb_writebatch_put(wb, (const char *)k, 17, (const char *)&v[i], 1);
    }
    return rocks_write((rocks *)s, wb, 1);
}

int rocks_friend_state(store *s, uint64_t a, uint64_t b, int *state)
{
    return friend_load(s, a, b, state);
}

int rocks_friend_set(store *s, uint64_t a, uint64_t b, int expect_a, int state_a)
{
    iy_user u;
    int rc, st;
    if (a == b || state_a < IY_FRIEND_NONE || state_a > IY_FRIEND_MUTUAL) return IY_EINVAL;
    rview rv = rocks_view((rocks *)s);
    if ((rc = rocks_user_load(&rv, b, &u, NULL)) != 0) return rc;
    if ((rc = friend_load(s, a, b, &st)) != 0) return rc;
    if (st != expect_a) return IY_ECONFLICT;
    return st == state_a ? 0 : friend_write(s, a, b, state_a);
}

/* Appends x to the malloc'd array *v of *n elements (capacity *cap). */
static void push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = iy_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = x;
}

int rocks_friend_list(store *s, uint64_t user, uint64_t **friends, size_t *nf,
                      uint64_t **incoming, size_t *ni, uint64_t **outgoing, size_t *no)
{
    uint64_t **arr[4] = { NULL, outgoing, incoming, friends };
    size_t *cnt[4] = { NULL, no, ni, nf }, cap[4] = { 0 };
    for (int i = 1; i < 4; i++) {
        *arr[i] = NULL;
        *cnt[i] = 0;
    }
    uint8_t lo[9], hi[9];
    key1(lo, K_FRIEND, user);
    rview rv = rocks_view((rocks *)s);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 9, hi, key1_succ(hi, K_FRIEND, user));
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 9); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != 17 || vl != 1 || v[0] < IY_FRIEND_OUTGOING || v[0] > IY_FRIEND_MUTUAL) {
            rc = rocks_corrupt("friend");
            break;
        }
        push_u64(arr[v[0]], cnt[v[0]], &cap[v[0]], get64(k + 9));
    }
    int rc2 = rocks_scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) {
        for (int i = 1; i < 4; i++) {
            iy_free(*arr[i]);
            *arr[i] = NULL;
            *cnt[i] = 0;
        }
    }
    return rc;
}

/* ---- blocks ('B' blocker blocked) ------------------------------------------------ */

/* ---- counts of blocks per blocked user and of mutes per channel --------------------- */

static void count_add(u64map *m, uint64_t k, int d)
{
    uint64_t *v = u64map_find(m, k), n = (v ? *v : 0) + (uint64_t)(int64_t)d;
    if (n == 0) u64map_del(m, k);
    else u64map_set(m, k, n);
}

/* Counts the records of one key space by the 8 bytes at `at` of their keys. */
static int count_range(rocks *s, int type, size_t at, u64map *m)
{
    uint8_t lo[1] = { (uint8_t)type }, hi[1] = { (uint8_t)(type + 1) };
    rview rv = rocks_view(s);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 1, hi, 1);
    for (rocksdb_iter_seek(it, (const char *)lo, 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == 17) count_add(m, get64(k + at), 1);
    }
    return rocks_scan_close(it);
}

int rocks_social_counts_load(rocks *s)
{
    u64map_clear(&s->blocked_n);
    u64map_clear(&s->muted_n);
    int rc = count_range(s, K_BLOCK, 9, &s->blocked_n);
    return rc ? rc : count_range(s, K_MUTE, 1, &s->muted_n);
}

/* Puts (on) or deletes the empty record k; keeps *count exact: 0, IY_EIO, IY_EUNAVAIL. */
static int flag_set(store *s, const uint8_t k[17], int on, u64map *count, uint64_t counted)
{
    char *v;
    size_t vl;
    int had = kv_get(s, k, 17, &v, &vl);
    if (had < 0) return had;
    if (had) rocksdb_free(v);
    if (had == on) return 0;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (on) rocksdb_writebatch_put(wb, (const char *)k, 17, "", 0);
    else rocksdb_writebatch_delete(wb, (const char *)k, 17);
    int rc = rocks_write((rocks *)s, wb, 1);
    if (rc == 0) count_add(count, counted, on ? 1 : -1);
    return rc;
}

int rocks_block_set(store *s, uint64_t blocker, uint64_t blocked, int on)
{
    iy_user u;
    uint8_t k[17];
    if (blocker == blocked) return IY_EINVAL;
    rview rv = rocks_view((rocks *)s);
    int rc = rocks_user_load(&rv, blocked, &u, NULL);
    if (rc) return rc;
    key2(k, K_BLOCK, blocker, blocked);
    return flag_set(s, k, on, &((rocks *)s)->blocked_n, blocked);
}

int rocks_blocked(store *s, uint64_t blocker, uint64_t blocked)
{
    uint8_t k[17];
    char *v;
    size_t vl;
    int rc = kv_get(s, k, key2(k, K_BLOCK, blocker, blocked), &v, &vl);
    if (rc == 1) rocksdb_free(v);
    return rc;
}

int rocks_block_list(store *s, uint64_t blocker, uint64_t **ids, size_t *n)
{
    uint8_t lo[9], hi[9];
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    key1(lo, K_BLOCK, blocker);
    rview rv = rocks_view((rocks *)s);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 9, hi, key1_succ(hi, K_BLOCK, blocker));
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 9); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != 17) {
            rc = rocks_corrupt("block");
            break;
        }
        push_u64(ids, n, &cap, get64(k + 9));
    }
    int rc2 = rocks_scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) {
        iy_free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- the round's @usernames ('n' username: user id) ------------------------------- */

int rocks_names_load(store *s, store_round *r)
{
    for (size_t i = 0; i < r->nname_keys; i++) {
        uint8_t k[1 + IY_USERNAME_MAX];
        size_t nl = strlen(r->name_keys[i]);
        char *v;
        size_t vl;
        k[0] = K_UNAME;
        memcpy(k + 1, r->name_keys[i], nl);
        int rc = kv_get(s, k, 1 + nl, &v, &vl);
        if (rc < 0) return rc;
        if (rc == 0) continue;
        if (vl == 8) round_put_name(r, r->name_keys[i], get64((const uint8_t *)v));
        rocksdb_free(v);
    }
    return 0;
}

/* ---- mutes ('X' channel user) ------------------------------------------------------ */

int rocks_mute_set(store *s, uint64_t user, uint64_t channel, int on)
{
    uint8_t k[17];
    key2(k, K_MUTE, channel, user);
    return flag_set(s, k, on, &((rocks *)s)->muted_n, channel);
}

int rocks_muted(store *s, uint64_t user, uint64_t channel)
{
    uint8_t k[17];
    char *v;
    size_t vl;
    int rc = kv_get(s, k, key2(k, K_MUTE, channel, user), &v, &vl);
    if (rc == 1) rocksdb_free(v);
    return rc;
}

/* The mutes of one channel: a short scan of its 'X' range (usually empty). */
static int mutes_load(store *s, store_round *r, uint64_t channel)
{
    uint8_t lo[9], hi[9];
    key1(lo, K_MUTE, channel);
    rview rv = rocks_view((rocks *)s);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 9, hi, key1_succ(hi, K_MUTE, channel));
    for (rocksdb_iter_seek(it, (const char *)lo, 9); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == 17) round_put_mute(r, channel, get64(k + 9));
    }
    return rocks_scan_close(it);
}

/* The round's blocks: (recipient, sender) of each direct send, one point
 * read each (a miss is answered by the bloom filters in memory); and the
 * mutes of every channel in the view. */
int rocks_blocks_load(store *s, store_round *r)
{
    rocks *rs = (rocks *)s;
    for (size_t i = 0; rs->muted_n.n && i < r->nchans; i++) {
        if (!u64map_find(&rs->muted_n, r->chans[i].ch.id)) continue;   /* nobody muted it */
        int rc = mutes_load(s, r, r->chans[i].ch.id);
        if (rc) return rc;
    }
    for (size_t i = 0; rs->blocked_n.n && i < r->nsends; i++) {
        const iy_send *in = &r->sends[i];
        if (!u64map_find(&rs->blocked_n, in->from)) continue;   /* nobody blocked the sender */
        uint64_t peer = store_round_direct_peer(r, in);
        if (!peer) continue;
        int rc = rocks_blocked(s, peer, in->from);
        if (rc < 0) return rc;
        if (rc == 1) round_put_block(r, peer, in->from);
    }
    return 0;
}

int rocks_share_channel(store *s, uint64_t a, uint64_t b)
{
    uint64_t *chs, ch;
    size_t n;
    /* The direct channel is the common case and one point read. */
    int rc = rocks_direct_load((rocks *)s, a < b ? a : b, a < b ? b : a, &ch);
    if (rc != IY_ENOTFOUND) return rc == 0 ? 1 : rc;
    if ((rc = rocks_user_channels(s, a, &chs, &n)) != 0) return rc;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t k[17];
        char *v;
        size_t vl;
        rc = kv_get(s, k, key2(k, K_UCHAN, b, chs[i]), &v, &vl);
        if (rc == 1) rocksdb_free(v);
    }
    iy_free(chs);
    return rc;
}

/* ---- presence persistence ------------------------------------------------------ */

int rocks_last_active_set(store *s, uint64_t user, int64_t ms)
{
    uint8_t k[9], v[8];
    put64(v, (uint64_t)ms);
    return rocks_put_lazy((rocks *)s, k, key1(k, K_ACTIVE, user), v, 8);
}

int rocks_last_active_get(store *s, uint64_t user, int64_t *ms)
{
    uint8_t k[9];
    uint64_t v;
    int rc = get_u64(s, k, key1(k, K_ACTIVE, user), &v, "last_active");
    *ms = rc == 0 ? (int64_t)v : 0;
    return rc;
}
int rocks_last_active_set_many(store *s, const uint64_t *users, const int64_t *ms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = rocks_last_active_set(s, users[i], ms[i]);
        if (rc) return rc;
    }
    return 0;
}

static int cmp_id(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

int rocks_friends_of(store *s, const uint64_t *users, size_t n, uint64_t **pairs, size_t *np)
{
    *pairs = NULL;
    *np = 0;
    uint64_t *u = iy_malloc((n ? n : 1) * sizeof *u);
    memcpy(u, users, n * sizeof *u);
    qsort(u, n, sizeof *u, cmp_id);
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i && u[i] == u[i - 1]) continue;
        uint64_t *f, *in, *out;
        size_t nf, ni, no;
        if ((rc = rocks_friend_list(s, u[i], &f, &nf, &in, &ni, &out, &no)) != 0) break;
        if (*np + nf > cap) {
            cap = (*np + nf) * 2;
            *pairs = iy_realloc(*pairs, cap * 2 * sizeof **pairs);
        }
        for (size_t k = 0; k < nf; k++) {
            (*pairs)[2 * *np] = u[i];
            (*pairs)[2 * *np + 1] = f[k];
            ++*np;
        }
        iy_free(f);
        iy_free(in);
        iy_free(out);
    }
    iy_free(u);
    if (rc) {
        iy_free(*pairs);
        *pairs = NULL;
        *np = 0;
    }
    return rc;
}

