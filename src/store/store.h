/* store.h — the storage seam: every byte of shared state.
 *
 * Two backends implement it, chosen at run time by store_open():
 *   - rocks/ : embedded RocksDB in a data directory (the default, one node);
 *   - pg/    : PostgreSQL (`postgresql://...`), shared by many nodes.
 * A backend stores, and assigns order (id, seq, pos) atomically. It does not
 * decide who may do what: membership, ownership, cmid idempotency, read-state
 * clamping, direct-channel creation and limits are rules of the core
 * (model/rules.h) that run on what the store loaded, inside a commit round
 * (below) when they guard a write.
 *
 * Threads. A store handle belongs to ONE thread (the storage thread,
 * store/dbq.h) from store_open to store_free; it is not thread-safe. The
 * reader interface at the end gives other threads read-only views of
 * committed data, one reader per thread. Readers and the storage thread run
 * concurrently without a lock.
 *
 * A send that edits or deletes a message names only the message
 * (iy_send.target): store_round_begin finds its channel (an index by
 * message id) and loads it with the rest, so the rules see both.
 *
 * Messages are written in rounds (group commit): store_round_begin() loads
 * and, on a shared backend, locks what the round's sends touch; the rules run
 * on that view; store_round_append() assigns id, seq (per channel) and pos
 * (per member inbox) and buffers the writes; store_round_commit() makes the
 * whole round durable at once, or none of it. Because counters are read
 * under the round's locks (PostgreSQL: rows locked in a fixed order, channels
 * by id, then users by id) or by the only writer (RocksDB), seq and pos stay
 * gap-free with any number of writers, also across crashes: a round that did
 * not commit was never acknowledged and its numbers are assigned again.
 *
 * Writes other than messages (users, sessions, groups, friends, push
 * subscriptions) are rare and durable one by one; they must not be called
 * while a round is open. Read state and last_active are written without
 * waiting for durability (a machine crash may lose the newest moves).
 *
 * Errors: 0, or IY_ENOTFOUND / IY_ECONFLICT / IY_ETOOBIG as each function
 * says, IY_EINVAL for arguments out of range (a == b, a bad state, lengths
 * past the limits: the caller's bug, nothing is written), IY_EUNAVAIL when the database cannot be reached (the call
 * failed within a few seconds; the backend reconnects by itself) and IY_EIO
 * for any other storage failure (logged).
 *
 * Memory: out-structs are filled by the store; pointers inside them (text,
 * arrays) belong to the caller afterwards (iy_msg_clear, iy_free). */
#ifndef IY_STORE_H
#define IY_STORE_H
#include <stddef.h>
#include <stdint.h>
#include "../base/buf.h"
#include "../model/types.h"

typedef struct store store;

/* ---- open / close ---------------------------------------------------- */

typedef struct store_config {
    const char *where;        /* a data directory (RocksDB), or a postgresql:// URI */
    const char *node;         /* this node's name, unique in the cluster (ids, leases) */
    int readers;              /* reader views that will be created (connections to open) */
    uint64_t min_free;        /* RocksDB: bytes the data directory's disk keeps free; writes
                                 that would eat into them are refused (IY_EUNAVAIL) */
    unsigned cache_mb;        /* RocksDB: the block cache in MiB, which also holds the index
                                 and filter blocks; memtables take at most half as much
                                 again (0: STORE_CACHE_MB_DEFAULT). Ignored by PostgreSQL. */
} store_config;

#define STORE_CACHE_MB_DEFAULT 64

/* 0 while the store can write; else nonzero with the reason in why (say,
 * the disk is below its reserve, or the last write failed). Any thread:
 * what /healthz answers. */
int store_health(store *s, char *why, size_t n);

/* The backend's gauges as Prometheus text, appended to out (void *: the
 * form metrics_set_source takes). Any thread, at scrape time: RocksDB's
 * write stalls, compactions, file sizes, memtables, block cache. */
void store_metrics(iy_buf *out, void *s);

/* 1 if where names a PostgreSQL database (postgresql:// or postgres://). */
int store_is_url(const char *where);

/* Opens the store, creating or upgrading its schema / data format, and
 * claims a node number for cfg->node (RocksDB: always 0). Refuses a
 * database or data directory of a newer format than this binary knows.
 * Returns 0 and *out, IY_EUNAVAIL (unreachable) or IY_EIO; the reason is
 * logged in one line. */
int store_open(const store_config *cfg, store **out);

/* Closes the store (releasing the node number). Accepts NULL. A round still
 * open is discarded. */
void store_free(store *s);

/* "rocksdb" or "postgresql". */
const char *store_kind(const store *s);

/* This node's number, mixed into every id it makes (0..IY_NODE_MAX). */
unsigned store_node(const store *s);

/* A fresh id from this node's generator. */
uint64_t store_new_id(store *s);

/* Keeps the node number claimed (a shared store leases it; call every few
 * seconds from the storage thread). Returns 0, IY_EUNAVAIL, IY_EIO, or
 * IY_ECONFLICT: another node took this node's number (this one could not
 * reach the store for longer than the lease), so its ids could collide: the
 * node must stop. */
int store_heartbeat(store *s);

/* ---- settings: small named blobs (the VAPID key) ---------------------- */

/* 0 with *v (malloc'd, NUL-terminated, iy_free) and *vl, IY_ENOTFOUND. */
int store_setting_get(store *s, const char *name, char **v, size_t *vl);

/* Stores value unless the name is set already (then *v gets the stored one,
 * so that concurrent first starts agree). 0 with *v / *vl as get. */
int store_setting_put_once(store *s, const char *name, const char *value, size_t len, char **v,
                           size_t *vl);

/* ---- users ----------------------------------------------------------- */

/* Creates a user; assigns out->id. pwhash: an Argon2id encoded hash (< 256
 * bytes). Returns 0, IY_ECONFLICT if the username is taken. */
int store_user_create(store *s, const char *username, const char *display_name,
                      const char *pwhash, iy_user *out);

/* Returns 0, IY_ENOTFOUND. */
int store_user_get(store *s, uint64_t id, iy_user *out);

/* The same, for a read done once and kept by the caller (a connection's
 * auth): it fills the store's cache only once the cache is nearly full
 * (RocksDB: rocks_once_view), so 15,000 connects do not grow it. */
int store_user_get_cold(store *s, uint64_t id, iy_user *out);

/* By username; pwhash (may be NULL) receives the encoded hash, at most 255
 * bytes. Returns 0, IY_ENOTFOUND. */
int store_user_find(store *s, const char *username, iy_user *out, char pwhash[256]);

/* Returns 0, IY_ENOTFOUND. */
int store_user_set_display_name(store *s, uint64_t id, const char *display_name);

/* Replaces the user's password hash (an Argon2id encoded hash, < 256
 * bytes). Returns 0, IY_ENOTFOUND. */
int store_user_set_password(store *s, uint64_t id, const char *pwhash);

/* Deletes the user: its record, its username (free to be taken again) and
 * its last activity; logins, lookups and sends addressed to it answer
 * IY_ENOTFOUND from then on. Its sessions, friends and blocks are for the
 * caller to end first; its messages, inbox and memberships stay. Returns 0,
 * IY_ENOTFOUND. */
int store_user_delete(store *s, uint64_t id);

/* ---- sessions (tokens are stored as their SHA-256) -------------------- */

int store_session_create(store *s, const uint8_t token_hash[32], uint64_t user, const char *device);

/* Returns 0 with *user and device, IY_ENOTFOUND. */
int store_session_get(store *s, const uint8_t token_hash[32], uint64_t *user,
                      char device[IY_DEVICE_MAX + 1]);

/* Deletes the session and, in the same write, the push subscriptions made
 * with it (iy_push_sub.session) with their pending notes: a device that
 * logged out gets no more previews. Returns 0, IY_ENOTFOUND. */
int store_session_delete(store *s, const uint8_t token_hash[32]);

/* One session of a user, as listed. */
typedef struct iy_session_info {
    uint8_t hash[32];                  /* the token's SHA-256 */
    char device[IY_DEVICE_MAX + 1];
    int64_t created_ms;                /* 0: made before sessions had a date */
} iy_session_info;

/* The user's sessions, oldest first: a malloc'd array (iy_free; NULL when
 * empty). */
int store_session_list(store *s, uint64_t user, iy_session_info **out, size_t *n);

/* ---- channels -------------------------------------------------------- */

/* Returns 0, IY_ENOTFOUND. */
int store_channel_get(store *s, uint64_t id, iy_channel *out);

/* Creates a group channel: owner, name and members (ascending, 2 to
 * IY_GROUP_MAX, decided by rules_group_members). Assigns out->id; seq 0.
 * Returns 0, IY_ENOTFOUND (a member does not exist). */
int store_group_create(store *s, uint64_t owner, const char *name, const uint64_t *members,
                       uint32_t n, iy_channel *out);

/* The channels user belongs to, in any order; *out malloc'd (iy_free). */
int store_user_channels(store *s, uint64_t user, uint64_t **out, size_t *n);

/* The newest message of a channel: 0 with *out, IY_ENOTFOUND if none. */
int store_channel_last(store *s, uint64_t channel, iy_msg *out);

/* 1 if a and b share a channel (direct or group), else 0; or an error. */
int store_share_channel(store *s, uint64_t a, uint64_t b);

/* ---- commit rounds (group commit of messages) ------------------------- */

typedef struct store_round store_round;

/* Begins a round for sends[0..n) (n >= 1): loads, and locks where the store
 * is shared, every channel they address (and the direct channel of every
 * pair a send to a user names), the inbox counter of every user those
 * channels have and of every other user named (to, subject), and every
 * (from, cmid) already stored. Nothing is written yet. At most one round is
 * open per store (IY_EINVAL while one is). Returns 0 and *out, IY_EUNAVAIL,
 * IY_EIO. */
int store_round_begin(store *s, const iy_send *sends, size_t n, store_round **out);

/* Lookups in the round's view (no I/O; valid until commit or abort). */

/* The channel as the round sees it (earlier appends' changes included), or
 * NULL if it does not exist (or was not among the round's sends). */
const iy_channel *store_round_channel(store_round *r, uint64_t id);

/* The direct channel of the pair a < b: 0 and *channel, IY_ENOTFOUND. */
int store_round_direct(store_round *r, uint64_t a, uint64_t b, uint64_t *channel);

/* 1 if user exists (it was named by the round's sends), else 0. */
int store_round_user_exists(store_round *r, uint64_t user);

/* 1 if user is in the view and its account exists now (a deleted user,
 * store_user_delete, stays in the view as a member of its channels; a new
 * direct channel must not be made with it): one read of the store, for the
 * rare sends that create a direct channel. 0, or an error. */
int store_round_user_live(store_round *r, uint64_t user);

/* The id of the user named `name` (a username of the round's texts,
 * rules_mention_names), or 0 if there is none. */
uint64_t store_round_name(store_round *r, const char *name);

/* 1 if `blocker` has blocked `blocked`, for the round's direct sends: the
 * view holds (recipient, sender) for every send to a user and every send
 * to a direct channel. */
int store_round_blocked(store_round *r, uint64_t blocker, uint64_t blocked);

/* The other member of the direct conversation a send goes to (its `to`,
 * or the other member of the direct channel it names, from the view), or
 * 0 when it goes to a group or to nothing known. */
uint64_t store_round_direct_peer(store_round *r, const iy_send *in);

/* 1 if user muted channel (a channel of the round that existed before it). */
int store_round_muted(store_round *r, uint64_t user, uint64_t channel);

/* The message a send changes (in->target of EDITED, DELETED) or replies to
 * (in->reply_to) as the round sees it: its current state, earlier
 * appends' changes included (text and reactions as loaded), or NULL if
 * there is no such message. Its channel is in the view. */
const iy_msg *store_round_target(store_round *r, uint64_t id);

/* The record of upload id as the round sees it (bound by an earlier send
 * of the round: channel set), or NULL if there is none (or the round's
 * sends did not name it). */
const iy_attachment *store_round_attachment(store_round *r, uint64_t id);

/* If (user, cmid) was stored before (committed, or appended earlier in this
 * round): IY_EEXIST with *orig holding the original's id, channel, seq, ts,
 * from, cmid and the sender's pos (nmembers 0). Else 0. */
int store_round_cmid(store_round *r, uint64_t user, const char *cmid, iy_stored *orig);

/* One message to store, as the rules decided it. */
typedef struct store_append {
    const iy_send *in;            /* from, text, cmid (rules_send_cmid), event, subject */
    uint64_t channel;             /* 0: create the direct channel of pair[0] < pair[1] */
    uint64_t pair[2];
    const iy_channel *changed;    /* events: the channel after the change; NULL: unchanged */
    const uint64_t *members;      /* whose inboxes get it, ascending */
    uint32_t nmembers;
    int sender_read;              /* the sender's read seq moves to this message */
    uint32_t nmentions;           /* members its text names (store_round_name), stored with it */
    uint64_t mentions[IY_MENTIONS_MAX];
    const iy_atts *atts;          /* the uploads it carries (store_round_attachment, checked by
                                     the rules); their records are bound to it in the commit */
} store_append;

/* Appends one message: assigns its id, the channel's next seq and the next
 * pos of every member's inbox, records the cmid, and buffers the writes.
 * An EDITED or DELETED event also rewrites its target (store_round_target)
 * in the same commit: the new text and edited_ms (the event's ts), or
 * deleted with no text and no mentions.
 * Fills out->msg (text NULL), out->members/pos (copied from a), leaves
 * out->owner alone. Returns 0, or IY_ENOTFOUND if the channel or a member
 * was not loaded by begin (a caller bug: nothing is appended). */
int store_round_append(store_round *r, const store_append *a, iy_stored *out);

/* Queues, in the round, a push notification of the message appended last
 * (preview: the first 100 code points of its text) to every push
 * subscription of user. While one for (subscription, channel) is pending, a
 * newer message collapses into it. Returns 0, IY_EINVAL if nothing was
 * appended yet. */
int store_round_push(store_round *r, uint64_t user);

/* Messages appended so far. */
size_t store_round_count(const store_round *r);

/* Commits the round with one durable write (an empty round touches
 * nothing) and frees it. Returns 0, or IY_EUNAVAIL / IY_EIO after which
 * nothing of the round is stored and every number it assigned is free again. */
int store_round_commit(store_round *r);

/* Discards the round. Accepts NULL. */
void store_round_abort(store_round *r);

/* The newest pos of user's inbox (committed), 0 if empty. */
int store_user_pos(store *s, uint64_t user, uint64_t *pos);

/* History of a channel: with before_seq (> 0) the up to limit messages below
 * it, newest first (before_seq == UINT64_MAX: from the newest); with
 * after_seq (before_seq == 0) the ones above it, oldest first. msg.pos 0. */
int store_history(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                  int limit, iy_msg_list *out);

/* Inbox entries of user after pos `after`, oldest first, at most limit,
 * each with its pos; *more = 1 if entries remain past the last. */
int store_sync(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more);

/* Messages stored through this handle since it was opened (for /metrics). */
uint64_t store_message_count(store *s);

/* ---- read state (receipts) ----------------------------------------------- */

/* Moves user's read seq in channel to seq if that is higher (never back);
 * *now gets the stored value. The caller decided seq (rules_read_seq); a
 * seq past the channel's newest committed seq is stored as that newest
 * (a round moves a sender's read seq to its message without reading it). */
int store_read_set(store *s, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now);

/* The read seq of user in channel (0 if never read). */
int store_read_get(store *s, uint64_t user, uint64_t channel, uint64_t *seq);

/* ---- friends (both sides of a pair change together) ---------------------- */

/* The state between a and b from a's side. */
int store_friend_state(store *s, uint64_t a, uint64_t b, int *state);

/* Sets the pair atomically: a's side to state_a (b's side is its mirror;
 * IY_FRIEND_NONE removes both) if a's side is still expect_a; else
 * IY_ECONFLICT (another writer moved it: read and decide again). Returns 0,
 * IY_ENOTFOUND (b does not exist), IY_ECONFLICT. */
int store_friend_set(store *s, uint64_t a, uint64_t b, int expect_a, int state_a);

/* user's friends, incoming and outgoing requests: three malloc'd arrays
 * (iy_free; NULL when empty), ascending ids. */
int store_friend_list(store *s, uint64_t user, uint64_t **friends, size_t *nf,
                      uint64_t **incoming, size_t *ni, uint64_t **outgoing, size_t *no);

/* ---- blocks (per account, one direction) ---------------------------------- */

/* blocker blocks (on) or unblocks (off) blocked. 0 (also when nothing
 * changes), IY_ENOTFOUND (blocked does not exist), IY_EINVAL (oneself). */
int store_block_set(store *s, uint64_t blocker, uint64_t blocked, int on);

/* 1 if blocker has blocked `blocked`, 0 if not, or an error. */
int store_blocked(store *s, uint64_t blocker, uint64_t blocked);

/* The users blocker has blocked: a malloc'd array (iy_free; NULL when
 * empty), ascending ids. */
int store_block_list(store *s, uint64_t blocker, uint64_t **ids, size_t *n);

/* ---- mutes (per member, per channel) -------------------------------------- */

/* user mutes (on) or unmutes (off) channel: no push notifications for it.
 * 0 (also when nothing changes); membership is the caller's to check. */
int store_mute_set(store *s, uint64_t user, uint64_t channel, int on);

/* 1 if user muted channel, 0 if not, or an error. */
int store_muted(store *s, uint64_t user, uint64_t channel);

/* ---- presence persistence ------------------------------------------------ */

/* last_active_at of a user (ms), kept across restarts; 0 if never seen. */
int store_last_active_set(store *s, uint64_t user, int64_t ms);
int store_last_active_get(store *s, uint64_t user, int64_t *ms);

/* store_last_active_set for many users at once (a batch of presence
 * changes; a user may repeat, the newest value is kept). A shared store
 * writes them with one statement, the embedded one one by one. */
int store_last_active_set_many(store *s, const uint64_t *users, const int64_t *ms, size_t n);

/* The friends (mutual) of each of users[0..n) at once: *pairs malloc'd
 * (iy_free; NULL when none) holds *np (user, friend) pairs, 2 * *np ids,
 * ascending by user, then by friend; a user may repeat in users. */
int store_friends_of(store *s, const uint64_t *users, size_t n, uint64_t **pairs, size_t *np);

/* ---- push: subscriptions and the durable outbox --------------------------- */

enum iy_push_kind { IY_PUSH_WEBHOOK = 1, IY_PUSH_WEBPUSH = 2 };

#define IY_PUSH_URL_MAX 2048
#define IY_PUSH_SUBS_MAX 32        /* subscriptions per user */

/* Where one device's notifications go. */
typedef struct iy_push_sub {
    uint64_t id;
    uint64_t user;
    char device[IY_DEVICE_MAX + 1];
    int kind;                              /* enum iy_push_kind */
    char url[IY_PUSH_URL_MAX + 1];         /* webhook URL or Web Push endpoint */
    char p256dh[128];                      /* webpush: the browser's public key, base64url */
    char auth[64];                         /* webpush: the auth secret, base64url */
    char secret[65];                       /* webhook: HMAC-SHA256 key, 64 hex chars */
    uint8_t session[32];                   /* the token hash of the session that made it (zeros:
                                              made before subscriptions had sessions) */
} iy_push_sub;

/* Stores sub (assigning sub->id). Returns 0, IY_ETOOBIG past
 * IY_PUSH_SUBS_MAX subscriptions of the user. */
int store_push_sub_create(store *s, iy_push_sub *sub);

/* Deletes subscription id of user, and its pending notifications.
 * Returns 0, IY_ENOTFOUND (no such id for this user). */
int store_push_sub_delete(store *s, uint64_t user, uint64_t id);

int store_push_sub_get(store *s, uint64_t id, iy_push_sub *out);

/* One pending notification: for one subscription, about one channel. */
typedef struct iy_push_note {
    uint64_t sub;                  /* the subscription it goes to */
    uint64_t user;
    uint64_t channel;
    uint64_t message_id;           /* also the notification's stable id */
    uint64_t from;
    char preview[401];             /* the first 100 code points of the text (<= 400 bytes) */
    int64_t created_ms;            /* when this (sub, channel) entry was first queued */
    int64_t due_ms;                /* next attempt */
    uint32_t attempts;
} iy_push_note;

/* Leases up to max notifications due at now_ms, oldest due first, to this
 * node for lease_ms: no node takes them again until the lease expires (a
 * node that dies mid-delivery leaves them to the others). With `all`, also
 * notes leased by this node before (a restarted node resumes its own).
 * *out malloc'd (iy_free). */
int store_push_take(store *s, int64_t now_ms, int64_t lease_ms, int all, size_t max,
                    iy_push_note **out, size_t *n);

/* The outcome of delivering note (as taken): done = delivered (removed,
 * unless a newer message collapsed into it meanwhile: then it stays, due
 * now); otherwise retry at retry_ms (attempts + 1) or, when dead, move it
 * to the dead letters. Only this node's lease is settled. */
int store_push_done(store *s, const iy_push_note *note, int done, int dead, int64_t retry_ms);

/* Pending notifications and dead letters (for /metrics). */
int store_push_counts(store *s, uint64_t *pending, uint64_t *dead);

/* ---- readers: committed reads from other threads --------------------------- */

/* A reader sees what was committed when each call starts (a round is
 * visible whole once store_round_commit returned, never in part); two calls
 * may see different commits. One thread at a time uses a reader; create
 * one per reading thread (at most cfg.readers for a shared store). Every
 * reader is freed before store_free(s). */
typedef struct store_reader store_reader;

/* A reader of s (any thread). Never fails: a reader that cannot reach its
 * database answers IY_EUNAVAIL and retries on its next call. */
store_reader *store_reader_new(store *s);
void store_reader_free(store_reader *r);       /* accepts NULL */

/* As store_history / store_sync / store_user_pos / store_session_get. */
int store_reader_history(store_reader *r, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                         int limit, iy_msg_list *out);
int store_reader_sync(store_reader *r, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                      int *more);

/* One page of a channel's history, in the contract's four ways: below
 * `before` (newest first), above `after` (oldest first), around `around`
 * (that seq and its neighbours, oldest first: up to limit/2 newer ones,
 * the rest older), or the newest page (newest first). At most one has_*. */
typedef struct store_page {
    uint64_t before, after, around;
    int has_before, has_after, has_around;
    int limit;
} store_page;
int store_reader_page(store_reader *r, uint64_t channel, const store_page *p, iy_msg_list *out);
int store_reader_user_pos(store_reader *r, uint64_t user, uint64_t *pos);
int store_reader_session(store_reader *r, const uint8_t token_hash[32], uint64_t *user,
                         char device[IY_DEVICE_MAX + 1]);
int store_reader_user_get(store_reader *r, uint64_t id, iy_user *out);

/* 0 if user is a member of channel, IY_ENOTFOUND (no such channel),
 * IY_EFORBIDDEN. */
int store_reader_is_member(store_reader *r, uint64_t channel, uint64_t user);

/* The channels user belongs to, as store_user_channels. */
int store_reader_user_channels(store_reader *r, uint64_t user, uint64_t **out, size_t *n);

/* The message (channel, seq) as history shows it: 0, IY_ENOTFOUND. */
int store_reader_message(store_reader *r, uint64_t channel, uint64_t seq, iy_msg *out);

/* ---- attachments -------------------------------------------------------------
 * The record of an uploaded file; its bytes live in the blob directory
 * (api/uploads.c), written and made durable before the record. */

/* Stores a new attachment (a->id from store_new_id). 0, IY_ECONFLICT (the
 * id exists), IY_EIO. */
int store_attachment_put(store *s, const iy_attachment *a);

/* 0 with *out, IY_ENOTFOUND. */
int store_reader_attachment(store_reader *r, uint64_t id, iy_attachment *out);

/* ---- search ------------------------------------------------------------------
 * A search index is derived from the messages: rebuilt from them, never the
 * only copy of anything. The indexer (store_indexer, one per store, on a
 * thread of its own: store/indexer.h) follows what this node committed, in
 * id order, from a cursor kept with the index in the same transaction; so
 * indexing never slows a commit, and after a crash it resumes where the
 * index's last transaction ended. RocksDB: SQLite FTS5 (trigram tokenizer)
 * in DIR/search.sqlite. PostgreSQL: the table search_docs with a pg_trgm
 * GIN index, one cursor per node number (search_cursors).
 *
 * The index is a candidate generator: a hit may be stale (a message edited
 * or deleted after it was indexed), so the caller re-reads each message and
 * decides with model/search.h. */

typedef struct store_hit {
    uint64_t id, channel, seq;
} store_hit;

/* Up to limit candidates for q (valid: iy_search_query_check) among the
 * messages of channels[0..n), newest first (so a common text stops at the
 * limit; the caller ranks them); before > 0: only ids below it.
 * *out malloc'd (iy_free; NULL when none). 0, IY_EUNAVAIL, IY_EIO. */
int store_reader_search(store_reader *r, const uint64_t *channels, size_t n, const char *q,
                        size_t qlen, uint64_t before, int limit, store_hit **out, size_t *nout);

typedef struct store_indexer store_indexer;

/* The indexer of s (any thread; used by one thread at a time): NULL if the
 * index cannot be opened (logged). Freed before store_free(s). */
store_indexer *store_indexer_new(store *s);
void store_indexer_free(store_indexer *x);   /* accepts NULL */

/* Indexes the next committed messages (a bounded batch, whole rounds):
 * 0 with *done = how many messages it looked at (0: caught up),
 * IY_EUNAVAIL, IY_EIO. */
int store_indexer_step(store_indexer *x, size_t *done);

/* 1: the last step stopped at its batch's limit, so more is waiting (step
 * again at once); 0: it took all there was (wait, so that batches grow:
 * an index's cost is mostly per batch). */
int store_indexer_full(store_indexer *x);

/* The newest message id indexed (tests, /metrics). */
uint64_t store_indexer_cursor(store_indexer *x);

/* Any thread: a step in progress (or the next) gives up soon, writing
 * nothing (IY_EUNAVAIL): for a prompt stop. */
void store_indexer_cancel(store_indexer *x);

/* ---- a copy for backups ------------------------------------------------------
 * The embedded store's files, copied consistently while it serves
 * (server/backup.h builds a backup around this: blobs, manifest, fsync). */

typedef struct store_copy_info {
    uint32_t format;            /* the data format of the copy (store_data_format at most) */
    int index;                  /* 1: the search index was copied; 0: none (rebuilt at start) */
} store_copy_info;

/* Any thread, while the storage thread, the readers and the indexer go on:
 * writes a consistent copy of s into dir (an existing, empty directory) that
 * opens as the data directory of the store as it was at one moment:
 *   1. dir/search.sqlite: the search index (SQLite VACUUM INTO, one read
 *      transaction; skipped if there is no index);
 *   2. dir/db: a RocksDB checkpoint (the memtables flushed, then the SST
 *      files hard-linked when dir is on the same file system, else copied;
 *      MANIFEST and the rest copied).
 * In that order: everything the index holds was committed before the
 * checkpoint, so the copy's index is behind its messages, never ahead, and
 * its indexer resumes from the index's cursor like after a crash. Nothing
 * is fsynced (the caller syncs the whole tree). 0; IY_EINVAL: this backend
 * keeps nothing in files of its own (PostgreSQL: pg_dump is its backup);
 * IY_EIO (logged). */
int store_copy(store *s, const char *dir, store_copy_info *info);

/* The newest data format of the embedded store this binary opens (the one
 * it writes): a data directory or backup of a newer one is refused. */
uint32_t store_data_format(void);

#endif
