/* chat.h — what the chat service's files share (see service.h for the map). */
#ifndef IY_CHAT_H
#define IY_CHAT_H
#include <stdint.h>
#include "service.h"

/* ---- deliver.c: bus events to this thread's sockets ---- */

/* The bus's subscriber callback body: handles ev on thread t and frees it. */
void deliver_event(iothread *t, void *ev);

/* A socket became ready with inbox pos P: its held messages with pos > P
 * go out now, in pos order, and later ones only when newer than what the
 * device was sent. */
void deliver_ready(conn *c, uint64_t pos);

#endif
