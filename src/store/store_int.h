/* store_int.h — what a storage backend implements, and the commit round's
 * in-memory view that both backends share. Not for the core: it includes
 * store.h only.
 *
 * A backend is a table of functions (store_ops) behind the first member of
 * its store struct; store.c dispatches every store_* call through it, so
 * the backend is chosen at run time (store_open) and the core links both.
 *
 * A commit round (store.h) is split so that the rules and the number
 * assignment are written once, here, for every backend:
 *
 *   store_round_begin (round.c)     collects the keys of the sends
 *     -> ops->round_load            backend: loads (and locks) channels,
 *                                   direct pairs, users' inbox heads, cmids,
 *                                   into the view with round_put_*()
 *   rules (core) on the view        store_round_channel/direct/cmid/...
 *   store_round_append (round.c)    assigns id, seq, pos from the loaded
 *                                   heads; records the message
 *   store_round_commit (round.c)
 *     -> ops->round_commit          backend: writes everything recorded in
 *                                   the view in one atomic, durable write
 *
 * So a backend never decides anything; it loads what it is asked and
 * stores what it is given, atomically. */
#ifndef IY_STORE_INT_H
#define IY_STORE_INT_H
#include "store.h"
#include "../base/kvmap.h"
#include "../base/u64map.h"

/* ---- the commit round's view ------------------------------------------------ */

typedef struct round_chan {
    iy_channel ch;              /* as the round sees it: loaded, then changed by events */
    uint64_t seq0;              /* newest committed seq when loaded (0 for a new channel) */
    uint64_t seq;               /* newest seq, assigned ones included */
    unsigned created : 1;       /* a direct channel this round creates */
    unsigned changed : 1;       /* members, owner or name changed by an event */
} round_chan;

typedef struct round_user {
    uint64_t id;
    uint64_t pos0;              /* newest committed inbox pos when loaded */
    uint64_t pos;               /* newest pos, assigned ones included */
} round_user;

/* One appended message. */
typedef struct round_msg {
    iy_msg m;                   /* id, channel, seq, from, ts, cmid, event, subject; m.text NULL */
    const char *text;           /* the send's text, not owned (valid until commit) */
    size_t text_len;
    uint32_t n;                 /* inbox rows: members[i] at pos[i] */
    uint64_t *members;
    uint64_t *pos;
    uint64_t sender_pos;        /* 0 if the sender got no inbox row */
    int sender_read;            /* the sender's read seq moves to m.seq */
} round_msg;

/* A message changed (EDITED, DELETED) or replied to by the round's sends. */
typedef struct round_target {
    uint64_t id;
    uint64_t channel;           /* located before the load (0: no such message) */
    int loaded;                 /* m holds its current state */
    iy_msg m;                   /* as loaded (text owned), then changed by the round */
    const char *text;           /* its text after the round's edits (m.text, or a send's) */
    size_t text_len;
    unsigned changed : 1;       /* the commit rewrites it */
} round_target;

/* An upload named by the round's sends (attachments). */
typedef struct round_att {
    uint64_t id;
    int loaded;                 /* a holds its record */
    iy_attachment a;            /* as loaded; channel and message set by the send carrying it */
    unsigned changed : 1;       /* the commit rewrites its record */
} round_att;

/* A push notification queued in the round: msgs[msg] to every subscription of user. */
typedef struct round_push {
    uint64_t user;
    size_t msg;
} round_push;

struct store_round {
    store *s;
    /* Keys, collected from the sends before the load (each list unique): */
    uint64_t *chan_keys;        /* channels addressed by id */
    size_t nchan_keys;
    uint64_t *pair_keys;        /* direct pairs, a < b, as pair_keys[2i], pair_keys[2i+1] */
    size_t npair_keys;
    uint64_t *user_keys;        /* users named by sends (to, subject), besides the members */
    size_t nuser_keys;
    const iy_send *sends;       /* for the cmid keys: (from, rules_send_cmid) of each */
    char (*name_keys)[IY_USERNAME_MAX + 1];   /* the @usernames of the texts, distinct */
    size_t nname_keys;
    size_t nsends;
    round_target *targets;      /* the messages the sends change or reply to, distinct ids */
    size_t ntargets, captargets;
    u64map target_idx;          /* target id -> index + 1 (replies are common: a round may hold many) */
    round_att *atts;            /* the uploads the sends carry, distinct ids */
    size_t natts, capatts;
    u64map att_idx;             /* attachment id -> index + 1 */
    /* The view, filled by the backend's load: */
    round_chan *chans;
    size_t nchans, capchans;
    u64map chan_idx;            /* channel id -> index + 1 */
    round_user *users;
    size_t nusers, capusers;
    u64map user_idx;            /* user id -> index + 1 */
    iy_kvmap pairs;             /* a,b (16 bytes, big-endian) -> channel (8 bytes) */
    iy_kvmap cmids;             /* user (8) + cmid -> channel, seq, id, sender pos (32 bytes) */
    iy_kvmap blocks;            /* blocker, blocked (16 bytes) present: a block (direct sends) */
    iy_kvmap mutes;             /* channel, user (16 bytes) present: a mute (push) */
    iy_kvmap names;             /* username -> user id (8 bytes), for the name keys that exist */
    /* Recorded by appends: */
    round_msg *msgs;
    size_t nmsgs, capmsgs;
    round_push *push;
    size_t npush, cappush;
    void *be;                   /* the backend's own round state, if any */
};

/* Filling the view (the backend's round_load). A channel's members must be
 * ascending. Users must be put for every member of every channel put and
 * for every user key that exists; a user not put does not exist. */
void round_put_channel(store_round *r, const iy_channel *ch, uint64_t seq);
void round_put_pair(store_round *r, uint64_t a, uint64_t b, uint64_t channel);
void round_put_user(store_round *r, uint64_t user, uint64_t pos);
void round_put_cmid(store_round *r, uint64_t user, const char *cmid, size_t cmid_len,
                    uint64_t channel, uint64_t seq, uint64_t id, uint64_t sender_pos);
/* A block that exists, for a direct send of the round: (recipient, sender)
 * of every send for which store_round_direct_peer is not 0 must be loaded,
 * by round_load itself or by blocks_load right after it. */
void round_put_block(store_round *r, uint64_t blocker, uint64_t blocked);
/* A mute of a channel put in the view: every mute of every such channel
 * must be loaded (round_load or blocks_load). */
void round_put_mute(store_round *r, uint64_t channel, uint64_t user);
/* A name key that is a user (names_load). */
void round_put_name(store_round *r, const char *name, uint64_t user);
/* The record of r->atts[i] (attachments_load; one not put does not exist). */
void round_put_attachment(store_round *r, size_t i, const iy_attachment *a);
/* The current state of a target (targets_load): r->targets[i].m takes *m
 * (text and reactions included; *m is zeroed). */
void round_put_target(store_round *r, size_t i, iy_msg *m);

/* The view's channel / user, or NULL. */
round_chan *round_chan_get(const store_round *r, uint64_t id);
round_user *round_user_get(const store_round *r, uint64_t id);

/* The key of a direct pair in the view's pairs map (16 bytes). */
void round_pair_key(uint8_t k[16], uint64_t a, uint64_t b);

/* ---- the backend table --------------------------------------------------------- */

typedef struct store_ops {
    const char *kind;
    int (*health)(store *s, char *why, size_t n);     /* NULL: always healthy */
    void (*metrics)(store *s, iy_buf *out);            /* NULL: none; any thread */
    void (*free)(store *s);
    int (*heartbeat)(store *s);
    int (*setting_get)(store *s, const char *name, char **v, size_t *vl);
    int (*setting_put_once)(store *s, const char *name, const char *value, size_t len, char **v,
                            size_t *vl);
    int (*user_create)(store *s, const char *username, const char *display_name, const char *pwhash,
                       iy_user *out);
    int (*user_get)(store *s, uint64_t id, iy_user *out);
    int (*user_get_cold)(store *s, uint64_t id, iy_user *out);   /* optional: user_get */
    int (*user_find)(store *s, const char *username, iy_user *out, char pwhash[256]);
    int (*user_set_display_name)(store *s, uint64_t id, const char *display_name);
    int (*session_create)(store *s, const uint8_t h[32], uint64_t user, const char *device);
    int (*session_get)(store *s, const uint8_t h[32], uint64_t *user, char device[IY_DEVICE_MAX + 1]);
    int (*session_delete)(store *s, const uint8_t h[32]);
    int (*session_list)(store *s, uint64_t user, iy_session_info **out, size_t *n);
    int (*user_set_password)(store *s, uint64_t id, const char *pwhash);
    int (*user_delete)(store *s, uint64_t id);
    int (*channel_get)(store *s, uint64_t id, iy_channel *out);
    int (*group_create)(store *s, uint64_t owner, const char *name, const uint64_t *members,
                        uint32_t n, iy_channel *out);
    int (*user_channels)(store *s, uint64_t user, uint64_t **out, size_t *n);
    int (*channel_last)(store *s, uint64_t channel, iy_msg *out);
    int (*share_channel)(store *s, uint64_t a, uint64_t b);
    int (*round_load)(store *s, store_round *r);
    int (*round_commit)(store *s, store_round *r);     /* on failure nothing is stored */
    void (*round_release)(store *s, store_round *r);   /* frees r->be after commit or abort; may be NULL */
    int (*user_pos)(store *s, uint64_t user, uint64_t *pos);
    int (*history)(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq, int limit,
                   iy_msg_list *out);
    int (*sync)(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more);
    int (*read_set)(store *s, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now);
    int (*read_get)(store *s, uint64_t user, uint64_t channel, uint64_t *seq);
    int (*friend_state)(store *s, uint64_t a, uint64_t b, int *state);
    int (*friend_set)(store *s, uint64_t a, uint64_t b, int expect_a, int state_a);
    int (*friend_list)(store *s, uint64_t user, uint64_t **f, size_t *nf, uint64_t **in, size_t *ni,
                       uint64_t **out, size_t *no);
    int (*block_set)(store *s, uint64_t blocker, uint64_t blocked, int on);
    int (*blocked)(store *s, uint64_t blocker, uint64_t blocked);
    int (*block_list)(store *s, uint64_t blocker, uint64_t **ids, size_t *n);
    int (*blocks_load)(store *s, store_round *r);     /* blocks and mutes, after round_load; NULL: round_load did it */
    int (*names_load)(store *s, store_round *r);      /* the name keys' users, after round_load */
    /* Changed messages: target_locate finds the channel of message id
     * before the round's load (0, IY_ENOTFOUND; a message never moves);
     * targets_load, after round_load (under the round's channel locks),
     * reads the current state of every r->targets[i] with a channel into
     * the view (round_put_target) if it is a plain message of that channel
     * (else, or missing, it stays unloaded). */
    int (*target_locate)(store *s, uint64_t id, uint64_t *channel);
    int (*targets_load)(store *s, store_round *r);
    int (*mute_set)(store *s, uint64_t user, uint64_t channel, int on);
    int (*muted)(store *s, uint64_t user, uint64_t channel);
    int (*last_active_set)(store *s, uint64_t user, int64_t ms);
    int (*last_active_get)(store *s, uint64_t user, int64_t *ms);
    int (*last_active_set_many)(store *s, const uint64_t *users, const int64_t *ms, size_t n);
    int (*friends_of)(store *s, const uint64_t *users, size_t n, uint64_t **pairs, size_t *np);
    int (*push_sub_create)(store *s, iy_push_sub *sub);
    int (*push_sub_delete)(store *s, uint64_t user, uint64_t id);
    int (*push_sub_get)(store *s, uint64_t id, iy_push_sub *out);
    int (*push_take)(store *s, int64_t now_ms, int64_t lease_ms, int all, size_t max,
                     iy_push_note **out, size_t *n);
    int (*push_done)(store *s, const iy_push_note *note, int done, int dead, int64_t retry_ms);
    int (*push_counts)(store *s, uint64_t *pending, uint64_t *dead);
    store_reader *(*reader_new)(store *s);
    void (*reader_free)(store_reader *r);
    int (*reader_history)(store_reader *r, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                          int limit, iy_msg_list *out);
    int (*reader_sync)(store_reader *r, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                       int *more);
    int (*reader_user_pos)(store_reader *r, uint64_t user, uint64_t *pos);
    int (*reader_session)(store_reader *r, const uint8_t h[32], uint64_t *user,
                          char device[IY_DEVICE_MAX + 1]);
    int (*reader_user_get)(store_reader *r, uint64_t id, iy_user *out);
    int (*reader_is_member)(store_reader *r, uint64_t channel, uint64_t user);
    int (*reader_user_channels)(store_reader *r, uint64_t user, uint64_t **out, size_t *n);
    int (*reader_search)(store_reader *r, const uint64_t *channels, size_t n, const char *q,
                         size_t qlen, uint64_t before, int limit, store_hit **out, size_t *nout);
    store_indexer *(*indexer_new)(store *s);
    int (*attachment_put)(store *s, const iy_attachment *a);
    /* After round_load: the record of every r->atts[i] that exists
     * (round_put_attachment); on a shared store, locked until the commit. */
    int (*attachments_load)(store *s, store_round *r);
    int (*reader_attachment)(store_reader *r, uint64_t id, iy_attachment *out);
    int (*copy)(store *s, const char *dir, store_copy_info *info);   /* NULL: no files to copy */
} store_ops;

/* The first member of every backend's indexer struct. */
typedef struct store_indexer_base {
    void (*free)(store_indexer *x);
    int (*step)(store_indexer *x, size_t *done);
    uint64_t cursor;            /* the newest id indexed */
    int full;                   /* the last step stopped at its batch's limit: more is waiting */
    _Atomic int cancel;         /* store_indexer_cancel: a step in progress gives up */
    void (*interrupt)(store_indexer *x);   /* optional: stops a statement running now (any thread) */
} store_indexer_base;

/* The first member of every backend's store struct. */
typedef struct store_base {
    const store_ops *ops;
    iy_idgen ids;               /* ids.node is the claimed node number */
    uint64_t msg_count;         /* messages committed through this handle */
    store_round *round;         /* the open round, if any */
} store_base;

/* The first member of every backend's reader struct. */
typedef struct store_reader_base {
    const store_ops *ops;
} store_reader_base;

/* The backends' openers (rocks/rocks.c, pg/pg.c). Each fills its store_base
 * (ops, ids.node, ids.last). */
int store_rocks_open(const store_config *cfg, store **out);
int store_pg_open(const store_config *cfg, store **out);

/* The preview of a push notification: the first 100 code points of text,
 * cut on a character boundary (at most 400 bytes), NUL-terminated; a
 * message without text but with attachments: a paperclip and the first
 * one's name. */
void store_push_preview(char dst[401], const char *text, size_t len, const iy_atts *atts);

#endif
