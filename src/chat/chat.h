/* chat.h — what the chat service's files share (see service.h for the map). */
#ifndef IY_CHAT_H
#define IY_CHAT_H
#include <stdint.h>
#include "service.h"

/* ---- deliver.c: bus events to this thread's sockets ---- */

/* The bus's subscriber callback body: handles ev on thread t and frees it. */
void deliver_event(iothread *t, void *ev);

/* A socket became ready with inbox pos P: its held messages with pos > P
 * go out now, in pos order; later ones in pos order with no gap. */
void deliver_ready(conn *c, uint64_t pos);

/* The device was acknowledged its own message at pos. */
void deliver_acked(conn *c, uint64_t pos);

/* A send of this socket went to the store (deliver_sending) or was
 * answered, ack or error (deliver_answered), by its cmid ("" for none): a
 * gap fill that finds the message committed before its ack reached the
 * socket waits for the ack instead of sending the device its own message
 * as a `msg`. */
void deliver_sending(conn *c, const char *cmid);
void deliver_answered(conn *c, const char *cmid);

/* Every sweep, per connection: fills a gap that stayed open, or runs a
 * due check of pos against the store (a reader job). */
void deliver_sweep(conn *c, uint64_t now);

/* Frees what c holds (it is closing). */
void deliver_forget(conn *c);

/* ---- chat.c ---- */

/* The bus confirmed the subscription c's auth waited for. */
void chat_subscribed(conn *c);

/* Names the WebSocket ops for metrics (metrics_ws_ops); before threads start. */
void chat_metrics_ops(void);

#endif
