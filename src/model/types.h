/* types.h — the domain types of iyagi: users, channels, messages, and what
 * a send asks for and gets back.
 *
 * Plain data, no behaviour: the rules over them are in rules.h, storage in
 * store/store.h, the wire forms in codec/proto.h. Every layer above base
 * may include this; it includes nothing of ours but the limits. */
#ifndef IY_MODEL_TYPES_H
#define IY_MODEL_TYPES_H
#include <stddef.h>
#include <stdint.h>
#include "../base/limits.h"

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
    uint64_t owner;                         /* groups only; 0 for direct or an empty group */
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
    IY_EV_EDITED = 4,          /* the message `subject` (the contract's target) has the new text */
    IY_EV_DELETED = 5,         /* the message `subject` was deleted (text "") */
    IY_EV_REACTED = 6,         /* from reacted to the message `subject` with the text (an emoji) */
    IY_EV_UNREACTED = 7,       /* from took that reaction back */
};

/* A change of a message (EDITED, DELETED) is an event like the membership
 * ones: stored in the changed message's channel with the next seq and an
 * inbox pos for every member, and the changed message itself is rewritten
 * in the same commit to show its current state (edited_ms, deleted). */
static inline int iy_event_changes_message(int event)
{
    return event >= IY_EV_EDITED && event <= IY_EV_UNREACTED;
}

/* The reactions on one message: each emoji with the users who chose it, in
 * the order they were first added. Only messages that have some carry it. */
typedef struct iy_reaction {
    char emoji[IY_EMOJI_MAX + 1];
    uint32_t n;
    uint64_t users[IY_REACTORS_MAX];     /* in the order they reacted */
} iy_reaction;

typedef struct iy_reactions {
    uint32_t n;
    iy_reaction v[IY_REACTIONS_MAX];
} iy_reactions;

/* The stored form of reactions, the same for every backend: n u8, then per
 * reaction: len u8, emoji, k u8, k user ids u64 (big-endian). Encode
 * returns the bytes written into out (room for iy_reactions_size(r)). */
size_t iy_reactions_size(const iy_reactions *r);
size_t iy_reactions_encode(const iy_reactions *r, uint8_t *out);
/* Decodes p[0..n) into a new iy_reactions (iy_free), NULL for none (n 0);
 * *bad = 1 if malformed. */
iy_reactions *iy_reactions_decode(const uint8_t *p, size_t n, int *bad);

/* An uploaded file (POST /v1/uploads): its bytes are a blob named by id in
 * the blob directory (api/uploads.c); this is what the store keeps. */
#define IY_ATTACH_NAME_MAX 200       /* bytes of a (made safe) file name */
#define IY_ATTACH_TYPE_MAX 63        /* bytes of a MIME type (sniffed) */
#define IY_ATTACH_GONE UINT64_MAX    /* channel of an upload whose message was deleted */
typedef struct iy_attachment {
    uint64_t id;
    uint64_t uploader;
    uint64_t channel;                /* 0 until a message of the uploader's carries it */
    uint64_t message;
    uint64_t size;                   /* bytes */
    int64_t created_ms;
    int thumb;                       /* a thumbnail blob exists */
    char type[IY_ATTACH_TYPE_MAX + 1];
    char name[IY_ATTACH_NAME_MAX + 1];
} iy_attachment;

/* Its stored form, the same for every backend: version u8 (1), uploader,
 * channel, message, size u64, created i64, thumb u8, type (len u8),
 * name (len u16). Encode returns the bytes written (at most
 * IY_ATTACHMENT_ENC_MAX); decode 0, or -1 if malformed. */
#define IY_ATTACHMENT_ENC_MAX (1 + 5 * 8 + 1 + 1 + IY_ATTACH_TYPE_MAX + 2 + IY_ATTACH_NAME_MAX)
size_t iy_attachment_encode(const iy_attachment *a, uint8_t *out);
int iy_attachment_decode(const uint8_t *p, size_t n, uint64_t id, iy_attachment *a);

/* What a message shows of its attachments (a copy of their records made
 * when it was sent, so that history needs no second read). */
#define IY_ATTACH_PER_MSG 10
typedef struct iy_att {
    uint64_t id, size;
    int thumb;
    char type[IY_ATTACH_TYPE_MAX + 1];
    char name[IY_ATTACH_NAME_MAX + 1];
} iy_att;
typedef struct iy_atts {
    uint32_t n;
    iy_att v[IY_ATTACH_PER_MSG];
} iy_atts;
/* Stored form, the same for every backend: n u8, then per attachment id,
 * size u64, thumb u8, type (len u8), name (len u16). */
#define IY_ATTS_ENC_MAX (1 + IY_ATTACH_PER_MSG * (8 + 8 + 1 + 1 + IY_ATTACH_TYPE_MAX + 2 + IY_ATTACH_NAME_MAX))
size_t iy_atts_encode(const iy_atts *a, uint8_t *out);
/* A new iy_atts (iy_free) from p[0..n), NULL for none; *bad = 1 if malformed. */
iy_atts *iy_atts_decode(const uint8_t *p, size_t n, int *bad);
iy_atts *iy_atts_copy(const iy_atts *a);   /* NULL stays NULL */

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
    uint64_t subject;              /* MEMBER_ADDED/REMOVED: the user added or removed;
                                      EDITED/DELETED: the id of the message changed */
    int64_t edited_ms;             /* a plain message: when it was last edited (0: never) */
    uint64_t reply_to;             /* a plain message that replies to an earlier one of its
                                      channel: that message's id and seq (0: no reply) */
    uint64_t reply_seq;
    int deleted;                   /* a plain message that was deleted (text "", no mentions) */
    iy_reactions *reactions;       /* owned (iy_msg_clear); NULL: none */
    iy_atts *atts;                 /* owned (iy_msg_clear); NULL: none (a deleted message has none) */
    uint32_t nmentions;            /* members named as @username in text (not the sender) */
    uint64_t mentions[IY_MENTIONS_MAX];
} iy_msg;

typedef struct iy_msg_list {
    iy_msg *v;
    size_t n;
} iy_msg_list;

void iy_msg_clear(iy_msg *m);              /* frees text and reactions; accepts a zeroed msg */
void iy_msg_list_clear(iy_msg_list *l);    /* frees every text and the array */

/* What a sender asks for: to a channel (channel != 0) or directly to a user
 * (to != 0; the direct channel between from and to is created on the first
 * message). text: valid UTF-8 already checked by the caller, not owned.
 * cmid may be "" (then no idempotency). */
typedef struct iy_send {
    uint64_t from;
    uint64_t channel;
    uint64_t to;
    const char *text;
    size_t text_len;
    const char *cmid;
    int event;                 /* enum iy_event; membership events need channel (a group) */
    uint64_t subject;          /* MEMBER_ADDED/REMOVED */
    uint64_t target;           /* EDITED/DELETED: the message changed; channel and to are 0 (the
                                  round finds the message's channel) */
    uint64_t reply_to;         /* a plain message: the message of the same channel it replies to
                                  (0: none) */
    const uint64_t *attachments;   /* a plain message: the sender's uploads it carries */
    uint32_t nattachments;         /* 0..IY_ATTACH_PER_MSG */
} iy_send;

/* What was stored: the message (msg.text NULL: the sender keeps its own),
 * everyone whose inbox got it, and each one's new inbox pos. msg.pos is the
 * sender's pos (0 if the sender got no inbox row). For events, members are
 * everyone concerned: the members after the change plus, for MEMBER_REMOVED,
 * the removed user (who learns of the removal and then gets nothing more);
 * owner is the group's owner after the change (0 for direct). A duplicate
 * (cmid seen before) fills msg only (nmembers 0). */
typedef struct iy_stored {
    iy_msg msg;
    uint32_t nmembers;
    uint64_t members[IY_GROUP_MAX + 1];
    uint64_t pos[IY_GROUP_MAX + 1];         /* pos[i] belongs to members[i] */
    uint64_t owner;
    uint64_t target_seq;                    /* EDITED/DELETED: the changed message's seq */
    uint64_t target_from;                   /* ... and its author */
} iy_stored;

/* The friendship between two users, from the first one's side. */
enum iy_friend_state {
    IY_FRIEND_NONE = 0,
    IY_FRIEND_OUTGOING = 1,    /* a asked b */
    IY_FRIEND_INCOMING = 2,    /* b asked a */
    IY_FRIEND_MUTUAL = 3,      /* friends */
};

/* ---- ids ---------------------------------------------------------------
 * Users, channels, messages and push subscriptions get 64-bit ids that are
 * unique across every node and time-sortable:
 *     (ms since 2024-01-01) << 22 | node << 12 | counter
 * node is the 10-bit number of the node that made it (store.h: one per live
 * node), counter counts ids made within the same ms by that node. */
#define IY_ID_EPOCH_MS 1704067200000LL
#define IY_NODE_MAX 1023u

/* The ms (since the Unix epoch) an id was made at. */
static inline int64_t iy_id_ts(uint64_t id) { return (int64_t)(id >> 22) + IY_ID_EPOCH_MS; }

/* The id generator of one node: strictly increasing, also when the clock
 * stands still or steps back (it then continues from the last id's ms; a
 * counter overflow borrows the next ms). Not thread-safe: one owner. */
typedef struct iy_idgen {
    uint64_t node;
    uint64_t last;             /* newest id handed out (persisted by the store) */
} iy_idgen;

uint64_t iy_id_next(iy_idgen *g);

#endif
