/* store.c — the storage seam's dispatch: store_open picks the backend,
 * every other store_* call goes through the backend's table (store_int.h).
 * The wrappers below are one line each, on purpose: nothing is decided here. */
#include "store_int.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define OPS(s) (((store_base *)(s))->ops)
#define ROPS(r) (((store_reader_base *)(r))->ops)

int store_is_url(const char *where)
{
    return where && (strncasecmp(where, "postgresql://", 13) == 0 || strncasecmp(where, "postgres://", 11) == 0);
}

int store_open(const store_config *cfg, store **out)
{
    *out = NULL;
    return store_is_url(cfg->where) ? store_pg_open(cfg, out) : store_rocks_open(cfg, out);
}

void store_free(store *s)
{
    if (!s) return;
    store_round_abort(((store_base *)s)->round);
    OPS(s)->free(s);
}

const char *store_kind(const store *s) { return OPS(s)->kind; }
void store_metrics(iy_buf *out, void *s)
{
    if (OPS(s)->metrics) OPS(s)->metrics(s, out);
}

int store_health(store *s, char *why, size_t n)
{
    return OPS(s)->health ? OPS(s)->health(s, why, n) : 0;
}
int store_copy(store *s, const char *dir, store_copy_info *info)
{
    return OPS(s)->copy ? OPS(s)->copy(s, dir, info) : IY_EINVAL;
}
unsigned store_node(const store *s) { return (unsigned)((const store_base *)s)->ids.node; }
uint64_t store_new_id(store *s) { return iy_id_next(&((store_base *)s)->ids); }
uint64_t store_message_count(store *s) { return ((store_base *)s)->msg_count; }

store_reader *store_reader_new(store *s) { return OPS(s)->reader_new(s); }

void store_reader_free(store_reader *r)
{
    if (r) ROPS(r)->reader_free(r);
}

void store_push_preview(char dst[401], const char *text, size_t len, const iy_atts *atts)
{
    if (len == 0 && atts && atts->n) {   /* a file without a caption: its name */
        char b[8 + IY_ATTACH_NAME_MAX + 1];
        int n = snprintf(b, sizeof b, "\xF0\x9F\x93\x8E %s", atts->v[0].name);   /* 📎 */
        text = b;
        len = n > 0 ? (size_t)n : 0;
        store_push_preview(dst, text, len, NULL);
        return;
    }
    size_t i = 0, cps = 0;
    while (i < len && cps < 100) {
        size_t j = i + 1;
        while (j < len && ((unsigned char)text[j] & 0xC0) == 0x80) j++;   /* continuation bytes */
        if (j > 400) break;
        i = j;
        cps++;
    }
    if (i) memcpy(dst, text, i);
    dst[i] = '\0';
}

int store_heartbeat(store *s) { return OPS(s)->heartbeat(s); }
int store_setting_get(store *s, const char *name, char **v, size_t *vl) { return OPS(s)->setting_get(s, name, v, vl); }
int store_setting_put_once(store *s, const char *name, const char *value, size_t len, char **v, size_t *vl) { return OPS(s)->setting_put_once(s, name, value, len, v, vl); }
int store_user_create(store *s, const char *username, const char *display_name, const char *pwhash, iy_user *out) { return OPS(s)->user_create(s, username, display_name, pwhash, out); }
int store_user_get(store *s, uint64_t id, iy_user *out) { return OPS(s)->user_get(s, id, out); }
int store_user_get_cold(store *s, uint64_t id, iy_user *out)
{
    return OPS(s)->user_get_cold ? OPS(s)->user_get_cold(s, id, out) : OPS(s)->user_get(s, id, out);
}
int store_user_find(store *s, const char *username, iy_user *out, char pwhash[256]) { return OPS(s)->user_find(s, username, out, pwhash); }
int store_user_set_display_name(store *s, uint64_t id, const char *display_name) { return OPS(s)->user_set_display_name(s, id, display_name); }
int store_user_set_password(store *s, uint64_t id, const char *pwhash) { return OPS(s)->user_set_password(s, id, pwhash); }
int store_user_delete(store *s, uint64_t id) { return OPS(s)->user_delete(s, id); }
int store_session_list(store *s, uint64_t user, iy_session_info **out, size_t *n) { return OPS(s)->session_list(s, user, out, n); }
int store_session_create(store *s, const uint8_t token_hash[32], uint64_t user, const char *device) { return OPS(s)->session_create(s, token_hash, user, device); }
int store_session_get(store *s, const uint8_t token_hash[32], uint64_t *user, char device[IY_DEVICE_MAX + 1]) { return OPS(s)->session_get(s, token_hash, user, device); }
int store_session_delete(store *s, const uint8_t token_hash[32]) { return OPS(s)->session_delete(s, token_hash); }
int store_channel_get(store *s, uint64_t id, iy_channel *out) { return OPS(s)->channel_get(s, id, out); }
int store_group_create(store *s, uint64_t owner, const char *name, const uint64_t *members, uint32_t n, iy_channel *out) { return OPS(s)->group_create(s, owner, name, members, n, out); }
int store_user_channels(store *s, uint64_t user, uint64_t **out, size_t *n) { return OPS(s)->user_channels(s, user, out, n); }
int store_channel_last(store *s, uint64_t channel, iy_msg *out) { return OPS(s)->channel_last(s, channel, out); }
int store_share_channel(store *s, uint64_t a, uint64_t b) { return OPS(s)->share_channel(s, a, b); }
int store_user_pos(store *s, uint64_t user, uint64_t *pos) { return OPS(s)->user_pos(s, user, pos); }
int store_history(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq, int limit, iy_msg_list *out) { return OPS(s)->history(s, channel, before_seq, after_seq, limit, out); }
int store_sync(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more) { return OPS(s)->sync(s, user, after, limit, out, more); }
int store_read_set(store *s, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now) { return OPS(s)->read_set(s, user, channel, seq, now); }
int store_read_get(store *s, uint64_t user, uint64_t channel, uint64_t *seq) { return OPS(s)->read_get(s, user, channel, seq); }
int store_friend_state(store *s, uint64_t a, uint64_t b, int *state) { return OPS(s)->friend_state(s, a, b, state); }
int store_friend_set(store *s, uint64_t a, uint64_t b, int expect_a, int state_a) { return OPS(s)->friend_set(s, a, b, expect_a, state_a); }
int store_mute_set(store *s, uint64_t user, uint64_t channel, int on) { return OPS(s)->mute_set(s, user, channel, on); }
int store_muted(store *s, uint64_t user, uint64_t channel) { return OPS(s)->muted(s, user, channel); }
int store_block_set(store *s, uint64_t blocker, uint64_t blocked, int on) { return OPS(s)->block_set(s, blocker, blocked, on); }
int store_blocked(store *s, uint64_t blocker, uint64_t blocked) { return OPS(s)->blocked(s, blocker, blocked); }
int store_block_list(store *s, uint64_t blocker, uint64_t **ids, size_t *n) { return OPS(s)->block_list(s, blocker, ids, n); }
int store_friend_list(store *s, uint64_t user, uint64_t **friends, size_t *nf, uint64_t **incoming, size_t *ni, uint64_t **outgoing, size_t *no) { return OPS(s)->friend_list(s, user, friends, nf, incoming, ni, outgoing, no); }
int store_last_active_set(store *s, uint64_t user, int64_t ms) { return OPS(s)->last_active_set(s, user, ms); }
int store_last_active_get(store *s, uint64_t user, int64_t *ms) { return OPS(s)->last_active_get(s, user, ms); }
int store_last_active_set_many(store *s, const uint64_t *users, const int64_t *ms, size_t n) { return OPS(s)->last_active_set_many(s, users, ms, n); }
int store_friends_of(store *s, const uint64_t *users, size_t n, uint64_t **pairs, size_t *np) { return OPS(s)->friends_of(s, users, n, pairs, np); }
int store_push_sub_create(store *s, iy_push_sub *sub) { return OPS(s)->push_sub_create(s, sub); }
int store_push_sub_delete(store *s, uint64_t user, uint64_t id) { return OPS(s)->push_sub_delete(s, user, id); }
int store_push_sub_get(store *s, uint64_t id, iy_push_sub *out) { return OPS(s)->push_sub_get(s, id, out); }
int store_push_take(store *s, int64_t now_ms, int64_t lease_ms, int all, size_t max, iy_push_note **out, size_t *n) { return OPS(s)->push_take(s, now_ms, lease_ms, all, max, out, n); }
int store_push_done(store *s, const iy_push_note *note, int done, int dead, int64_t retry_ms) { return OPS(s)->push_done(s, note, done, dead, retry_ms); }
int store_push_counts(store *s, uint64_t *pending, uint64_t *dead) { return OPS(s)->push_counts(s, pending, dead); }
int store_reader_history(store_reader *r, uint64_t channel, uint64_t before_seq, uint64_t after_seq, int limit, iy_msg_list *out) { return ROPS(r)->reader_history(r, channel, before_seq, after_seq, limit, out); }
int store_reader_sync(store_reader *r, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more) { return ROPS(r)->reader_sync(r, user, after, limit, out, more); }
int store_reader_user_pos(store_reader *r, uint64_t user, uint64_t *pos) { return ROPS(r)->reader_user_pos(r, user, pos); }
int store_reader_session(store_reader *r, const uint8_t token_hash[32], uint64_t *user, char device[IY_DEVICE_MAX + 1]) { return ROPS(r)->reader_session(r, token_hash, user, device); }
int store_reader_user_get(store_reader *r, uint64_t id, iy_user *out) { return ROPS(r)->reader_user_get(r, id, out); }
int store_reader_is_member(store_reader *r, uint64_t channel, uint64_t user) { return ROPS(r)->reader_is_member(r, channel, user); }
int store_reader_user_channels(store_reader *r, uint64_t user, uint64_t **out, size_t *n) { return ROPS(r)->reader_user_channels(r, user, out, n); }
int store_reader_search(store_reader *r, const uint64_t *channels, size_t n, const char *q, size_t qlen, uint64_t before, int limit, store_hit **out, size_t *nout) { return ROPS(r)->reader_search(r, channels, n, q, qlen, before, limit, out, nout); }
store_indexer *store_indexer_new(store *s) { return OPS(s)->indexer_new(s); }
int store_attachment_put(store *s, const iy_attachment *a) { return OPS(s)->attachment_put(s, a); }
int store_reader_attachment(store_reader *r, uint64_t id, iy_attachment *out) { return ROPS(r)->reader_attachment(r, id, out); }
void store_indexer_free(store_indexer *x) { if (x) ((store_indexer_base *)x)->free(x); }
int store_indexer_step(store_indexer *x, size_t *done) { return ((store_indexer_base *)x)->step(x, done); }
int store_indexer_full(store_indexer *x) { return ((store_indexer_base *)x)->full; }
uint64_t store_indexer_cursor(store_indexer *x) { return ((store_indexer_base *)x)->cursor; }
void store_indexer_cancel(store_indexer *x)
{
    store_indexer_base *b = (store_indexer_base *)x;
    atomic_store(&b->cancel, 1);
    if (b->interrupt) b->interrupt(x);
}

int store_reader_message(store_reader *r, uint64_t channel, uint64_t seq, iy_msg *out)
{
    iy_msg_list l = { 0 };
    if (seq == 0 || seq == UINT64_MAX) return IY_ENOTFOUND;
    int rc = store_reader_history(r, channel, seq + 1, 0, 1, &l);
    if (rc) return rc;
    if (l.n == 1 && l.v[0].seq == seq) {
        *out = l.v[0];
        l.n = 0;
    } else {
        rc = IY_ENOTFOUND;
    }
    iy_msg_list_clear(&l);
    return rc;
}

int store_reader_page(store_reader *r, uint64_t channel, const store_page *p, iy_msg_list *out)
{
    if (!p->has_around)
        return store_reader_history(r, channel, p->has_after ? 0 : (p->has_before ? p->before : UINT64_MAX),
                                    p->has_after ? p->after : 0, p->limit, out);
    /* A page of `limit`: (limit - 1) / 2 newer ones, `around` and older
     * ones for the rest; near either end, the other side fills the page. */
    iy_msg_list newer = { 0 }, older = { 0 }, more = { 0 };
    int want_newer = (p->limit - 1) / 2, rc = 0;
    if (want_newer) rc = store_reader_history(r, channel, 0, p->around, want_newer, &newer);
    if (rc == 0)
        rc = store_reader_history(r, channel, p->around == UINT64_MAX ? UINT64_MAX : p->around + 1, 0,
                                  p->limit - (int)newer.n, &older);
    if (rc == 0 && newer.n == (size_t)want_newer && older.n + newer.n < (size_t)p->limit)
        rc = store_reader_history(r, channel, 0, newer.n ? newer.v[newer.n - 1].seq : p->around,
                                  p->limit - (int)(older.n + newer.n), &more);
    if (rc == 0 && more.n) {
        newer.v = iy_realloc(newer.v, (newer.n + more.n) * sizeof *newer.v);
        memcpy(newer.v + newer.n, more.v, more.n * sizeof *more.v);
        newer.n += more.n;
        iy_free(more.v);
        more = (iy_msg_list){ 0 };
    }
    if (rc) {
        iy_msg_list_clear(&newer);
        iy_msg_list_clear(&older);
        iy_msg_list_clear(&more);
        return rc;
    }
    out->n = older.n + newer.n;
    out->v = iy_malloc((out->n ? out->n : 1) * sizeof *out->v);
    for (size_t i = 0; i < older.n; i++) out->v[i] = older.v[older.n - 1 - i];   /* moved, not copied */
    if (newer.n) memcpy(out->v + older.n, newer.v, newer.n * sizeof *newer.v);
    iy_free(older.v);
    iy_free(newer.v);
    return 0;
}
