/* store.h — the storage seam: users, sessions, channels, messages, inboxes.
 *
 * The embedded backend (store_rocks.c, RocksDB) implements this today; a
 * PostgreSQL backend can implement the same functions later. The store is
 * synchronous and NOT thread-safe: exactly one thread (the storage thread,
 * core/dbq.c) calls it. Reads see committed state only.
 *
 * Threads. Every store_* function below is for the storage thread only
 * (after store_open, before store_free). The one exception is the reader
 * interface at the end (store_reader_*): a reader is a read-only view of
 * committed data for ONE other thread at a time (e.g. core/readq.c's reader
 * threads); it never touches the storage thread's caches or open batch, so
 * readers and the storage thread run concurrently without a lock.
 *
 * Messages are written in batches (group commit): store_batch_begin(), any
 * number of store_batch_add(), then store_batch_commit() which makes the
 * whole batch durable with one sync, or none of it. Within a batch, seq (per
 * channel) and pos (per user inbox) are assigned in order; a failed commit
 * undoes every assignment, so both stay gap-free, also across crashes (a
 * crash before the sync loses the whole batch, which was never acknowledged).
 *
 * Writes other than messages (users, sessions) are rare and are synced one
 * by one; they must not be called while a batch is open.
 *
 * Ids: users, channels and messages get 64-bit ids from one generator that
 * is time-sortable: (ms since 2024-01-01) << 22 | node << 12 | counter, and
 * strictly increasing, also across restarts (the newest id is persisted).
 *
 * Memory: every out-struct is filled by the store; pointers inside it
 * (text, member lists) are owned by the caller afterwards and released with
 * the matching *_clear() function.
 */
#ifndef IY_STORE_H
#define IY_STORE_H
#include <stddef.h>
#include <stdint.h>
#include "../base/limits.h"

typedef struct store store;

typedef struct iy_user {
    uint64_t id;
    char username[IY_USERNAME_MAX + 1];
    char display_name[IY_DISPLAY_MAX + 1];
} iy_user;

enum iy_channel_kind { IY_DIRECT = 1, IY_GROUP = 2 };

typedef struct iy_channel {
    uint64_t id;
    int kind;                               /* enum iy_channel_kind */
    char name[IY_GROUP_NAME_MAX + 1];       /* groups only; "" for direct */
    uint64_t owner;                         /* groups only; 0 for direct */
    uint32_t nmembers;
    uint64_t members[IY_GROUP_MAX + 1];     /* ascending user ids */
} iy_channel;

/* Membership events are stored as messages of their channel (with seq and an
 * inbox pos for every member concerned), so every device learns of them in
 * order, live or through sync. */
enum iy_event {
    IY_EV_NONE = 0,            /* a user's message */
    IY_EV_MEMBER_ADDED = 1,    /* subject joined (added by from) */
    IY_EV_MEMBER_REMOVED = 2,  /* subject left (from == subject) or was removed by the owner */
    IY_EV_RENAMED = 3,         /* the group's new name is the text */
};

/* One stored message. text is owned (malloc'd, NUL-terminated, text_len bytes). */
typedef struct iy_msg {
    uint64_t id;
    uint64_t channel;
    uint64_t seq;
    uint64_t pos;                  /* in the reader's inbox; 0 when not applicable */
    uint64_t from;
    int64_t ts;                    /* ms since the epoch, from the id */
    char cmid[IY_CMID_MAX + 1];    /* "" if none */
    char *text;
    size_t text_len;
    int event;                     /* enum iy_event */
    uint64_t subject;              /* MEMBER_ADDED/REMOVED: the user added or removed */
} iy_msg;

typedef struct iy_msg_list {
    iy_msg *v;
    size_t n;
} iy_msg_list;

void iy_msg_clear(iy_msg *m);              /* frees text; accepts a zeroed msg */
void iy_msg_list_clear(iy_msg_list *l);    /* frees every text and the array */

/* ---- open / close ---------------------------------------------------- */

/* Opens (creating if missing) the store in directory dir, which must exist.
 * node is the 10-bit node number mixed into ids (0 for a single node).
 * Returns 0 and *out, or IY_EIO (the reason is logged). */
int store_open(const char *dir, unsigned node, store **out);

/* Closes the store; every committed write is already durable. Accepts NULL.
 * A batch still open is discarded: nothing of it is stored, and its seq/pos
 * are assigned again by the next batch. */
void store_free(store *s);

/* ---- users ----------------------------------------------------------- */

/* Creates a user; assigns out->id. pwhash is an Argon2id encoded hash
 * (NUL-terminated, < 256 bytes). Synced before returning.
 * Returns 0, IY_ECONFLICT if the username is taken, IY_EIO. */
int store_user_create(store *s, const char *username, const char *display_name,
                      const char *pwhash, iy_user *out);

/* Returns 0, IY_ENOTFOUND, IY_EIO. */
int store_user_get(store *s, uint64_t id, iy_user *out);

/* Looks a user up by username; pwhash (may be NULL) receives the encoded
 * hash, NUL-terminated, at most 255 bytes. Returns 0, IY_ENOTFOUND, IY_EIO. */
int store_user_find(store *s, const char *username, iy_user *out, char pwhash[256]);

/* Sets the display name. Returns 0, IY_ENOTFOUND, IY_EIO. */
int store_user_set_display_name(store *s, uint64_t id, const char *display_name);

/* ---- sessions (tokens are stored as their SHA-256) -------------------- */

/* Returns 0, IY_EIO. Synced. */
int store_session_create(store *s, const uint8_t token_hash[32], uint64_t user, const char *device);

/* Returns 0 with *user and device (NUL-terminated), IY_ENOTFOUND, IY_EIO. */
int store_session_get(store *s, const uint8_t token_hash[32], uint64_t *user,
                      char device[IY_DEVICE_MAX + 1]);

/* Returns 0, IY_ENOTFOUND, IY_EIO. Synced. */
int store_session_delete(store *s, const uint8_t token_hash[32]);

/* ---- channels -------------------------------------------------------- */

/* Returns 0, IY_ENOTFOUND, IY_EIO. */
int store_channel_get(store *s, uint64_t id, iy_channel *out);

/* The direct channel between a and b, if it exists: 0 with *channel, IY_ENOTFOUND, IY_EIO. */
int store_direct_find(store *s, uint64_t a, uint64_t b, uint64_t *channel);

/* Creates a group with the given members (creator included by the caller,
 * owner = creator), 2..IY_GROUP_MAX members, all existing users.
 * Returns 0 and *out, IY_ETOOBIG, IY_EINVAL (fewer than 2), IY_ENOTFOUND (a
 * member does not exist), IY_EIO. Synced. */
int store_group_create(store *s, uint64_t creator, const char *name,
                       const uint64_t *members, size_t n, iy_channel *out);

/* The channels of user, newest activity first is NOT guaranteed: any order.
 * *out is malloc'd (free with iy_free). Returns 0, IY_EIO. */
int store_user_channels(store *s, uint64_t user, uint64_t **out, size_t *n);

/* The newest message of a channel (0 with *out, IY_ENOTFOUND if none, IY_EIO). */
int store_channel_last(store *s, uint64_t channel, iy_msg *out);

/* ---- messages -------------------------------------------------------- */

typedef struct store_batch store_batch;

/* What to store: to a channel (channel != 0) or directly to a user (to != 0,
 * the direct channel between from and to is created on the first message).
 * text: valid UTF-8 already checked by the caller. cmid may be "" (then no
 * idempotency). */
typedef struct iy_send {
    uint64_t from;
    uint64_t channel;
    uint64_t to;
    const char *text;
    size_t text_len;
    const char *cmid;
    int event;                 /* enum iy_event; events need channel (a group) */
    uint64_t subject;          /* MEMBER_ADDED/REMOVED */
} iy_send;

/* What was stored: the message (text NOT copied: out->msg.text is NULL; the
 * caller keeps its own), its members, and each member's new inbox pos.
 * A user's message also sets its sender's read seq to its seq (in the same
 * batch); an event does not move the actor's read seq. owner is the group's
 * owner for every message (0 for direct). event/subject are echoed in msg
 * (subject 0 for RENAMED).
 * msg.pos is the sender's pos. For events, members are everyone concerned:
 * the members after the change plus, for MEMBER_REMOVED, the removed user
 * (who learns of the removal and then gets nothing more); owner is the
 * group's owner after the change (it passes to the lowest remaining member
 * id when the owner leaves). */
typedef struct iy_stored {
    iy_msg msg;
    uint32_t nmembers;
    uint64_t members[IY_GROUP_MAX + 1];
    uint64_t pos[IY_GROUP_MAX + 1];         /* pos[i] belongs to members[i] */
    uint64_t owner;                         /* events: the owner after the change */
} iy_stored;

/* Opens the one batch of this store (at most one open at a time). Never fails. */
store_batch *store_batch_begin(store *s);

/* Adds one message to the open batch.
 * Returns:
 *   0            stored in the batch; *out filled (durable only after commit)
 *   IY_EEXIST    (from, cmid) was already stored, committed or earlier in this
 *                batch: *out holds the original's id, channel, seq, ts and
 *                the sender's pos (nmembers = 0); nothing new is added
 *   IY_ENOTFOUND the channel or the `to` user does not exist
 *   IY_EFORBIDDEN from is not a member of the channel
 *   IY_EINVAL    to == from, or neither/both of channel and to, or an
 *                event on a direct channel, or a rename to "" / > IY_GROUP_NAME_MAX
 *   IY_ECONFLICT MEMBER_ADDED of a user who is already a member
 *   IY_ETOOBIG   MEMBER_ADDED to a group of IY_GROUP_MAX members
 *   IY_EFORBIDDEN also: MEMBER_REMOVED of someone else by a non-owner,
 *                RENAMED by a non-owner (any member may add)
 *   IY_ENOTFOUND also: MEMBER_ADDED of a user that does not exist,
 *                MEMBER_REMOVED of a non-member
 *   IY_EIO
 * Events apply their membership/name change inside the batch (later adds of
 * the same batch see it) and never use cmid idempotency (cmid is ignored).
 * An event is checked in this order: a channel that is not a group, or an
 * event value out of range -> IY_EINVAL; from not a member -> IY_EFORBIDDEN;
 * then ADDED: ECONFLICT, ENOTFOUND, ETOOBIG; REMOVED: EFORBIDDEN, ENOTFOUND;
 * RENAMED: EFORBIDDEN, then EINVAL (also for a name holding a NUL byte).
 * In an empty group (everyone left) every add is IY_EFORBIDDEN.
 * On failure the batch is unchanged and stays usable. */
int store_batch_add(store_batch *b, const iy_send *in, iy_stored *out);

/* Writes the batch with one sync and closes it. Returns 0, or IY_EIO after
 * which nothing of the batch is stored and every seq/pos it assigned is
 * free again. An empty batch commits without touching the disk. */
int store_batch_commit(store_batch *b);

/* The newest pos of user's inbox (committed), 0 if empty. Returns 0, IY_EIO. */
int store_user_pos(store *s, uint64_t user, uint64_t *pos);

/* History of a channel: with before_seq (> 0) the up to limit messages below
 * it, newest first (before_seq == UINT64_MAX: from the newest); with
 * after_seq (>= 0, before_seq == 0) the ones above it, oldest first.
 * msg.pos is 0. An unknown channel has no messages. Returns 0, IY_EIO. */
int store_history(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                  int limit, iy_msg_list *out);

/* Inbox entries of user after pos `after`, oldest first, at most limit,
 * each message with its pos. *more = 1 if entries remain past the last.
 * Returns 0, IY_EIO. */
int store_sync(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more);

/* ---- read state (receipts) ----------------------------------------------- */

/* Records that user has read channel up to seq; it only moves forward (a
 * smaller seq is ignored, returning 0); a seq past the channel's newest
 * committed seq is clamped to it. *now gets the stored read seq.
 * Membership is not checked here (the caller does).
 * Written without sync: a process crash keeps it (the WAL is written), a
 * machine crash may lose the last moves, which is harmless for receipts.
 * Returns 0, IY_EIO. */
int store_read_set(store *s, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now);

/* The read seq of user in channel (0 if never read). Returns 0, IY_EIO. */
int store_read_get(store *s, uint64_t user, uint64_t channel, uint64_t *seq);

/* ---- friends (symmetric, by request and acceptance) --------------------- */

enum iy_friend_state {
    IY_FRIEND_NONE = 0,
    IY_FRIEND_OUTGOING = 1,    /* a asked b */
    IY_FRIEND_INCOMING = 2,    /* b asked a */
    IY_FRIEND_MUTUAL = 3,      /* friends */
};

/* a asks b (PUT /v1/friends/b). If b had asked a, both become friends.
 * Idempotent. *state is the state from a's side afterwards. Synced.
 * Returns 0, IY_ENOTFOUND (b does not exist), IY_EINVAL (a == b), IY_EIO. */
int store_friend_put(store *s, uint64_t a, uint64_t b, int *state);

/* Ends a friendship or a request in either direction, for both. Idempotent
 * (nothing to end, a == b included: 0, no write).
 * Synced. Returns 0, IY_ENOTFOUND (b does not exist), IY_EIO. */
int store_friend_delete(store *s, uint64_t a, uint64_t b);

/* The state between a and b from a's side. Returns 0, IY_EIO. */
int store_friend_state(store *s, uint64_t a, uint64_t b, int *state);

/* user's friends, incoming and outgoing requests: three malloc'd arrays
 * (free with iy_free; NULL when empty), ascending ids. Returns 0, IY_EIO. */
int store_friend_list(store *s, uint64_t user, uint64_t **friends, size_t *nf,
                      uint64_t **incoming, size_t *ni, uint64_t **outgoing, size_t *no);

/* 1 if a and b share a channel (direct or group), else 0; IY_EIO. */
int store_share_channel(store *s, uint64_t a, uint64_t b);

/* ---- presence persistence ------------------------------------------------ */

/* last_active_at of a user (ms), kept across restarts; 0 if never seen.
 * Set is written without sync (see store_read_set). Return 0, IY_EIO. */
int store_last_active_set(store *s, uint64_t user, int64_t ms);
int store_last_active_get(store *s, uint64_t user, int64_t *ms);

/* ---- push: subscriptions and the durable outbox --------------------------- */

enum iy_push_kind { IY_PUSH_WEBHOOK = 1, IY_PUSH_WEBPUSH = 2 };

#define IY_PUSH_URL_MAX 2048

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
} iy_push_sub;

/* Stores sub (assigning sub->id). Synced. A user has at most 32
 * subscriptions: IY_ETOOBIG past that. Returns 0, IY_ETOOBIG, IY_EIO. */
int store_push_sub_create(store *s, iy_push_sub *sub);

/* Deletes subscription id of user (its pending notifications go too).
 * Synced. Returns 0, IY_ENOTFOUND (no such id for this user), IY_EIO. */
int store_push_sub_delete(store *s, uint64_t user, uint64_t id);

/* 0 with *out, IY_ENOTFOUND, IY_EIO. */
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

/* In the open batch (atomic with the message): queues a notification of
 * message m (preview = its first 100 code points) to every subscription of
 * user. Collapse rule: while a notification for (subscription, channel) is
 * still pending, a newer message updates it (message_id, from, preview; due
 * now; created_ms and attempts kept) instead of queueing another. A user
 * with no subscription costs nothing. Returns 0, IY_EIO. */
int store_batch_push(store_batch *b, uint64_t user, const iy_msg *m, const char *text, size_t text_len);

/* Up to max notifications due at now_ms (due_ms <= now_ms), oldest due
 * first; each one taken is leased: its due_ms moves to now_ms + lease_ms so
 * it is not taken again while in flight. *out malloc'd (iy_free).
 * Returns 0, IY_EIO. */
int store_push_take(store *s, int64_t now_ms, int64_t lease_ms, size_t max, iy_push_note **out, size_t *n);

/* The outcome of delivering note (as taken): done = delivered (removed,
 * unless a newer message collapsed into it meanwhile: then it stays, due
 * now); otherwise retry at retry_ms (attempts + 1), or, when dead, move it
 * to the dead letters. Returns 0, IY_EIO. */
int store_push_done(store *s, const iy_push_note *note, int done, int dead, int64_t retry_ms);

/* Counts for /metrics: pending notifications and dead letters. */
int store_push_counts(store *s, uint64_t *pending, uint64_t *dead);

/* Counters for /metrics: number of messages stored (since creation). */
uint64_t store_message_count(store *s);

/* ---- readers: committed reads from other threads --------------------------- */

/* A reader sees what was committed when each call starts (a batch is
 * visible whole once store_batch_commit returned, never in part); each call
 * is consistent in itself (a scan reads one snapshot), two calls may see
 * different commits. A reader object is used by one thread at a time (it
 * owns mutable read options); create as many as there are reading threads.
 * store_reader_new and store_reader_free may be called from any thread, but
 * every reader must be freed before store_free(s). */
typedef struct store_reader store_reader;

/* A reader of s. Never fails. */
store_reader *store_reader_new(store *s);

/* Accepts NULL. */
void store_reader_free(store_reader *r);

/* As store_history / store_sync, from r. */
int store_reader_history(store_reader *r, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                         int limit, iy_msg_list *out);
int store_reader_sync(store_reader *r, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                      int *more);

/* As store_user_pos (read from the database, not the storage thread's cache). */
int store_reader_user_pos(store_reader *r, uint64_t user, uint64_t *pos);

/* As store_session_get. */
int store_reader_session(store_reader *r, const uint8_t token_hash[32], uint64_t *user,
                         char device[IY_DEVICE_MAX + 1]);

/* 0 if user is a member of channel (read from the database, not the
 * storage thread's channel cache), IY_ENOTFOUND (no such channel),
 * IY_EFORBIDDEN, IY_EIO. */
int store_reader_is_member(store_reader *r, uint64_t channel, uint64_t user);

#endif
