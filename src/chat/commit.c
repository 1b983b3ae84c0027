/* commit.c — the commit round: every send of a storage-thread round,
 * checked by the rules and stored with one durable commit (dbq.h, step 1).
 *
 *   store_round_begin     the store loads (and, shared, locks) what the sends
 *                         touch: channels, direct pairs, inbox heads, cmids
 *   for each send         post_send (post.h): the rules on that view, then
 *                         append: id, seq, pos; push notes for members with
 *                         no device here
 *   store_round_commit    one durable write, or nothing
 *   the bus batch         a self-contained copy of every new message,
 *                         published once the acks were handed back
 *
 * A later send of the same round sees what earlier ones changed (a group
 * renamed, a member added, a direct channel created, a cmid used), because
 * the rules read the round's view, which appends update.
 *
 * Push: a member online at the commit (presence.h: a device on this node,
 * or on another node as that node announced it) gets none; anyone else
 * gets a note in the same commit as the message, so a notification exists
 * exactly when its message does, unless it muted the channel and the
 * message does not mention it (the round reads the channel's mutes with
 * the channel). The push worker asks again before it
 * sends (the member may have come online since). */
#include "service.h"
#include "post.h"
#include "limiter.h"
#include "presence.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "../model/rules.h"
#include "../push/pushd.h"
#include <string.h>

/* Logs a failed round: the first of a run of failures, then one line a
 * second at most with the count (a store that is down fails every round). */
static void log_failure(service *svc, const char *what, size_t n)
{
    int64_t now = (int64_t)mono_ns() / 1000000;
    svc->round_failures++;
    if (svc->round_failures > 1 && now - svc->round_failure_logged_ms < 1000) return;
    iy_log_error("storage: %s a round of %zu sends failed; answering unavailable (%llu failed rounds so far)",
           what, n, (unsigned long long)svc->round_failures);
    svc->round_failure_logged_ms = now;
}

/* Marks every send of the round failed with err (nothing was stored). */
static void fail_all(dbq_job *sends, int err)
{
    for (dbq_job *j = sends; j; j = j->_next) j->err = err;
}

static void *commit(void *ctx, store *s, dbq_job *sends)
{
    service *svc = ctx;
    size_t n = 0;
    for (dbq_job *j = sends; j; j = j->_next) n++;
    iy_send *in = iy_malloc(n * sizeof *in);
    n = 0;
    for (dbq_job *j = sends; j; j = j->_next) in[n++] = j->send;

    store_round *r = NULL;
    int rc = store_round_begin(s, in, n, &r);
    iy_free(in);
    if (rc) {
        metrics_add(M_COMMIT_ERRORS, 1);
        log_failure(svc, "loading", n);
        fail_all(sends, IY_EUNAVAIL);
        return NULL;
    }

    int pushed = 0;
    int64_t now = (int64_t)now_ms();
    limiter *new_directs = svc->limits ? svc->limits->direct_user : NULL;
    for (dbq_job *j = sends; j; j = j->_next) {
        j->err = post_send_limited(r, &j->send, new_directs, now, &j->stored);
        if (j->err) continue;
        const iy_stored *st = &j->stored;
        for (uint32_t i = 0; i < st->nmembers; i++) {
            /* Online anywhere (this node's sockets, or another node's view
             * as it announced it) at the commit: no notification. */
            int online = presence_online(svc->presence, st->members[i]);
            if (rules_push_wanted(&st->msg, st->members[i], online) &&
                (!store_round_muted(r, st->members[i], st->msg.channel) || rules_mentions(&st->msg, st->members[i])) &&
                store_round_push(r, st->members[i]) == 0) {
                metrics_add(M_PUSH_QUEUED, 1);
                pushed = 1;
            }
        }
    }

    size_t nnew = store_round_count(r);
    if ((rc = store_round_commit(r)) != 0) {
        metrics_add(M_COMMIT_ERRORS, 1);
        log_failure(svc, "committing", nnew);
        for (dbq_job *j = sends; j; j = j->_next)
            if (j->err == 0 || j->err == IY_EEXIST) j->err = IY_EUNAVAIL;
        return NULL;
    }
    if (svc->round_failures) {
        iy_log_info("storage: rounds commit again after %llu failed ones", (unsigned long long)svc->round_failures);
        svc->round_failures = 0;
    }
    bus_batch *b = nnew ? bus_batch_new(nnew) : NULL;
    for (dbq_job *j = sends; j; j = j->_next) {
        if (j->err == IY_EEXIST) metrics_add(M_DUPLICATES, 1);
        if (j->err) continue;
        bus_origin o = { svc->node, j->origin_thread, j->origin_conn };
        bus_batch_add(b, &j->stored.msg, j->text ? j->text : "", j->send.text_len, j->stored.members,
                      j->stored.pos, j->stored.nmembers, o);
    }
    if (nnew) {
        metrics_add(M_COMMITS, 1);
        metrics_add(M_MESSAGES_STORED, (int64_t)nnew);
        metrics_observe_batch(nnew);
    }
    if (pushed) pushd_kick(svc->pushd);
    return b;
}

static void publish(void *ctx, void *what)
{
    service *svc = ctx;
    bus_publish(svc->bus, what);
}

dbq_round_fns commit_round_fns(service *svc)
{
    return (dbq_round_fns){ svc, commit, publish };
}
