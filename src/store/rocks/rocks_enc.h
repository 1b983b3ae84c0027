/* rocks_enc.h — key and value encoding of the RocksDB backend, shared by
 * its files (the key layout is documented at the top of rocks.c). */
#ifndef IY_ROCKS_ENC_H
#define IY_ROCKS_ENC_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "../../base/bytes.h"

enum {
    K_META = 'm', K_USER = 'u', K_UNAME = 'n', K_SESSION = 's', K_CHANNEL = 'c',
    K_DIRECT = 'd', K_UCHAN = 'x', K_MSG = 'M', K_INBOX = 'I', K_CMID = 'C',
    K_READ = 'R', K_FRIEND = 'F', K_ACTIVE = 'L', K_VERSION = 'V', K_SETTING = 'G',
    K_BLOCK = 'B', K_USESSION = 'z', K_MUTE = 'X', K_MSGID = 'i', K_ATTACH = 'a',
};

#define MSG_F_EVENT 0x80u   /* in a message's flags byte: an event block follows the cmid (format 3:
                               event 0 there is a plain message's block of mentions) */

#define MSG_EV_STATE 0xFFu /* format 4: the event byte of a plain message that was edited or
                              deleted or replies: state u8 (MSG_S_*), [edited ms u64],
                              [reply_to u64, reply_seq u64], [reactions], n u8, n mentions */
#define MSG_S_EDITED 1u
#define MSG_S_DELETED 2u
#define MSG_S_REPLY 4u
#define MSG_S_REACTIONS 8u /* then len u16 + iy_reactions_encode */
#define MSG_S_ATTACH 16u   /* then len u16 + iy_atts_encode (attachments; no format change: a
                              new state bit that older readers never meet in older data) */

/* Keys: type byte followed by one or two big-endian u64. */
static inline size_t key1(uint8_t *k, int type, uint64_t a)
{
    k[0] = (uint8_t)type;
    put64(k + 1, a);
    return 9;
}

static inline size_t key2(uint8_t *k, int type, uint64_t a, uint64_t b)
{
    key1(k, type, a);
    put64(k + 9, b);
    return 17;
}

static inline size_t key3(uint8_t *k, int type, uint64_t a, uint64_t b, uint64_t c)
{
    key2(k, type, a, b);
    put64(k + 17, c);
    return 25;
}

/* The smallest key above every key that starts with type+a. */
static inline size_t key1_succ(uint8_t *k, int type, uint64_t a)
{
    if (a == UINT64_MAX) {
        k[0] = (uint8_t)(type + 1);
        return 1;
    }
    return key1(k, type, a + 1);
}

#endif
