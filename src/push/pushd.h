/* pushd.h — the push worker: its own thread delivering the durable outbox.
 *
 * Notifications are queued by the storage thread in the same commit as
 * their message (store_batch_push). The worker asks the storage thread for
 * due notifications (leased so they are not taken twice), sends them with
 * libcurl's multi interface (many in flight, timeouts, no redirects, no
 * private addresses unless allowed), and reports each outcome back as a
 * storage job: delivered (removed), retry later (exponential backoff with
 * jitter), dead (given up after the give-up age), or gone (a Web Push
 * endpoint answered 404/410: the subscription is deleted). Delivery is at
 * least once; X-Iyagi-Notification-Id lets receivers drop repeats.
 *
 * The worker never touches the store or an I/O thread directly: it talks to
 * the storage thread with jobs whose results come back to its own queue
 * (dbq_job.post) with a curl_multi_wakeup. */
#ifndef IY_PUSHD_H
#define IY_PUSHD_H
#include <stdint.h>
#include <sys/socket.h>
#include "webpush.h"
#include "../store/dbq.h"

typedef struct pushd_config {
    int allow_private;      /* --push-allow-private */
    int retry_base_ms;      /* first retry delay (doubles each attempt, capped at 10 min) */
    int give_up_s;          /* age past which a notification becomes a dead letter */
    const char *subject;    /* VAPID "sub" claim (a mailto: or https: contact) */
    /* 1 if user is online on some node now (then a due notification is
     * settled without being sent); NULL: never asked. Any thread. */
    int (*online)(void *ctx, uint64_t user);
    void *online_ctx;
} pushd_config;

typedef struct pushd pushd;

/* Starts the worker. v must outlive it. Returns NULL if it cannot start. */
pushd *pushd_start(dbq *q, const vapid *v, const pushd_config *cfg);

/* New notifications may be due (any thread). Accepts NULL. */
void pushd_kick(pushd *p);

/* Stops the worker; transfers in flight are abandoned (their leases expire
 * and they are sent again: at least once). Must run AFTER dbq_stop, so that
 * no storage job can hand a result back to a stopped worker (its later
 * submits fail harmlessly). Accepts NULL. */
void pushd_stop(pushd *p);

/* 1 if a push may connect to sa: not loopback, private, link-local,
 * unique-local, CGNAT, multicast or unspecified. */
int push_address_public(const struct sockaddr *sa);

#endif
