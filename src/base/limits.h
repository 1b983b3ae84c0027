/* limits.h — every input size limit of iyagi, in one place.
 * The contract (shared/PROTOCOL.md) fixes some; the rest are ours. */
#ifndef IY_LIMITS_H
#define IY_LIMITS_H

#define IY_USERNAME_MIN 3
#define IY_USERNAME_MAX 32          /* bytes of [a-z0-9_.-] */
#define IY_PASSWORD_MIN 8
#define IY_PASSWORD_MAX 1024        /* bytes */
#define IY_DISPLAY_MAX_CP 64        /* code points */
#define IY_DISPLAY_MAX 256          /* bytes (64 code points of up to 4 bytes) */
#define IY_DEVICE_MAX 64            /* bytes of a device name */
#define IY_CMID_MAX 64              /* bytes */
#define IY_RID_MAX 64               /* bytes */
#define IY_TEXT_MAX_CP 100000       /* code points of a message text */
#define IY_TEXT_MAX_BYTES 400000    /* 100,000 four-byte code points */
#define IY_GROUP_MAX 100            /* members of a group */
#define IY_GROUP_NAME_MAX 256       /* bytes */
#define IY_PAGE_MAX 200             /* history page */
#define IY_PAGE_DEFAULT 50
#define IY_SYNC_MAX 500             /* sync batch over WebSocket */
#define IY_SYNC_DEFAULT 100
#define IY_WAIT_MAX 60              /* seconds of long polling */
#define IY_PRESENCE_QUERY_MAX 200   /* user ids in one presence query */
#define IY_MENTIONS_MAX 20          /* distinct @usernames of a message that count as mentions */
#define IY_EDIT_WINDOW_MS (24LL * 3600 * 1000)   /* a message can be edited this long after it was sent */
#define IY_EMOJI_MAX 32             /* bytes of a reaction */
#define IY_REACTIONS_MAX 20         /* distinct reactions on one message */
#define IY_REACTORS_MAX 100         /* users with the same reaction on one message */
#define IY_SEARCH_MIN_CP 2          /* code points of a search query */
#define IY_SEARCH_MAX_CP 100
#define IY_SEARCH_MAX_BYTES 400
#define IY_SEARCH_LIMIT_MAX 100     /* results of one search */
#define IY_SEARCH_LIMIT_DEFAULT 20

/* A JSON frame or body carrying the largest text, escaped at worst as
 * \uXXXX\uXXXX surrogate pairs (12 bytes per code point), plus room. */
#define IY_JSON_MAX (IY_TEXT_MAX_CP * 12 + 65536)
#define IY_HTTP_HEADER_MAX 16384    /* request line plus headers */

#endif
