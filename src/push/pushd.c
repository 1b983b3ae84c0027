/* pushd.c — the push worker (see pushd.h).
 *
 *   kick / 1 s timer ──► take job (storage thread: due notes, leased)
 *        ──► results on our queue ──► one curl easy handle per note
 *        ──► outcome ──► done job (storage thread: remove / retry / dead / gone)
 *
 * Only this thread touches the curl handles. */
#include "pushd.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../codec/jsonw.h"
#include "../base/metrics.h"
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_INFLIGHT 64
#define LEASE_MS 30000          /* longer than a transfer can take (timeouts below) */
#define TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS 5000
#define MAX_BACKOFF_MS 600000
#define ID_EPOCH_MS 1704067200000LL

struct pushd {
    dbq *q;
    const vapid *v;
    pushd_config cfg;
    pthread_t thread;
    CURLM *multi;
    pthread_mutex_t mu;
    int kicked, stopping;       /* under mu */
    dbq_job *results;           /* under mu: finished take jobs */
    int taking;                 /* a take job is out */
    int started;                /* the first take also takes leased notes */
    size_t inflight;
    struct xfer *xfers;         /* in flight, for cleanup at stop */
    int64_t next_poll;
    unsigned seed;
};

/* What a notification shows besides the preview: who sent it and, for a
 * group, which one (read with the note, on the storage thread). */
typedef struct note_names {
    char from[IY_DISPLAY_MAX + 1];
    char group[IY_GROUP_NAME_MAX + 1];
} note_names;

typedef struct take_job {
    dbq_job j;
    pushd *p;
    int64_t now;
    int all;                    /* also notes this node leased before (after a restart) */
    size_t max;
    iy_push_note *notes;
    iy_push_sub *subs;          /* subs[i] for notes[i]; id 0 if it is gone */
    note_names *names;          /* names[i] for notes[i] ("" where unknown) */
    size_t n;
} take_job;

typedef struct done_job {
    dbq_job j;
    iy_push_note note;
    int done, dead, gone;
    int64_t retry_ms;
} done_job;

typedef struct xfer {
    struct xfer *prev, *next;   /* the worker's transfers in flight */
    CURL *easy;
    struct curl_slist *headers;
    iy_buf body;
    iy_push_note note;
    int kind;
    char err[CURL_ERROR_SIZE];
} xfer;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- address policy ---- */

int push_address_public(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        uint32_t b0 = a >> 24, b1 = (a >> 16) & 0xff;
        if (b0 == 0 || b0 == 10 || b0 == 127 || b0 >= 224) return 0;      /* this net, private, loopback, multicast+ */
        if (b0 == 169 && b1 == 254) return 0;                              /* link-local */
        if (b0 == 172 && (b1 & 0xf0) == 16) return 0;                      /* 172.16/12 */
        if (b0 == 192 && b1 == 168) return 0;                              /* 192.168/16 */
        if (b0 == 100 && (b1 & 0xc0) == 64) return 0;                      /* CGNAT 100.64/10 */
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *x = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t zero[16];
        if (!memcmp(x, zero, 15) && (x[15] == 0 || x[15] == 1)) return 0;   /* :: and ::1 */
        if ((x[0] & 0xfe) == 0xfc) return 0;                                /* fc00::/7 */
        if (x[0] == 0xfe && (x[1] & 0xc0) == 0x80) return 0;                /* fe80::/10 */
        if (x[0] == 0xff) return 0;                                         /* multicast */
        static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (!memcmp(x, v4mapped, 12)) {
            struct sockaddr_in v4 = { .sin_family = AF_INET };
            memcpy(&v4.sin_addr, x + 12, 4);
            return push_address_public((struct sockaddr *)&v4);
        }
        return 1;
    }
    return 0;
}

/* Checked at connect time too, so a name that resolved to a public address
 * at subscription time cannot later point into our own network. */
static curl_socket_t open_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    pushd *p = ctx;
    if (!p->cfg.allow_private && !push_address_public(&a->addr)) return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype, a->protocol);
}

/* ---- storage jobs ---- */

static void job_free(dbq_job *j) { iy_free(j); }
static void job_drop(dbq_job *j) { dbq_job_unref(j); }

static void take_free(dbq_job *j)
{
    take_job *t = (take_job *)j;
    iy_free(t->notes);
    iy_free(t->subs);
    iy_free(t->names);
    iy_free(t);
}

static void take_run(store *s, dbq_job *j)
{
    take_job *t = (take_job *)j;
    j->err = store_push_take(s, t->now, LEASE_MS, t->all, t->max, &t->notes, &t->n);
    if (j->err) return;
    /* The outbox as of this take (one point read): its depth, its dead
     * letters, and the age of the oldest note that is due. */
    uint64_t pending, dead;
    if (store_push_counts(s, &pending, &dead) == 0) {
        metrics_set(M_PUSH_OUTBOX, (int64_t)pending);
        metrics_set(M_PUSH_DEAD_LETTERS, (int64_t)dead);
    }
    int64_t oldest = t->now;
    for (size_t i = 0; i < t->n; i++)
        if (t->notes[i].created_ms < oldest) oldest = t->notes[i].created_ms;
    metrics_set(M_PUSH_OLDEST_S, (t->now - oldest) / 1000);
    t->subs = iy_calloc(t->n ? t->n : 1, sizeof *t->subs);
    t->names = iy_calloc(t->n ? t->n : 1, sizeof *t->names);
    for (size_t i = 0; i < t->n; i++) {
        if (store_push_sub_get(s, t->notes[i].sub, &t->subs[i]) != 0) t->subs[i].id = 0;
        /* The names, read once per sender and channel of the batch (a group's message
         * makes a note for every member with no device online). */
        size_t k = 0;
        while (k < i && t->notes[k].from != t->notes[i].from) k++;
        if (k < i) {
            memcpy(t->names[i].from, t->names[k].from, sizeof t->names[i].from);
        } else {
            iy_user u;
            if (store_user_get(s, t->notes[i].from, &u) == 0)
                snprintf(t->names[i].from, sizeof t->names[i].from, "%s", u.display_name[0] ? u.display_name : u.username);
        }
        for (k = 0; k < i && t->notes[k].channel != t->notes[i].channel; k++) {}
        if (k < i) {
            memcpy(t->names[i].group, t->names[k].group, sizeof t->names[i].group);
        } else {
            iy_channel c;
            if (store_channel_get(s, t->notes[i].channel, &c) == 0 && c.kind == IY_GROUP)
                snprintf(t->names[i].group, sizeof t->names[i].group, "%s", c.name);
        }
    }
}

static void take_post(dbq_job *j)
{
    pushd *p = ((take_job *)j)->p;
    pthread_mutex_lock(&p->mu);
    j->_next = p->results;
    p->results = j;
    pthread_mutex_unlock(&p->mu);
    curl_multi_wakeup(p->multi);
}

static void done_run(store *s, dbq_job *j)
{
    done_job *d = (done_job *)j;
    if (d->gone) store_push_sub_delete(s, d->note.user, d->note.sub);
    else store_push_done(s, &d->note, d->done, d->dead, d->retry_ms);
}

static void report(pushd *p, const iy_push_note *note, int done, int dead, int gone, int64_t retry_ms)
{
    done_job *d = iy_calloc(1, sizeof *d);
    dbq_job_init(&d->j, DBQ_RUN);
    d->j.run = done_run;
    d->j.post = job_drop;
    d->j.free = job_free;
    d->note = *note;
    d->done = done;
    d->dead = dead;
    d->gone = gone;
    d->retry_ms = retry_ms;
    if (dbq_submit(p->q, &d->j) != 0) iy_free(d); /* stopping: the lease expires, it is retried */
}

/* ---- one delivery ---- */

static void note_json(iy_buf *b, const iy_push_note *n, const note_names *nm, int with_id)
{
    iy_buf_putc(b, '{');
    if (with_id) {
        iy_buf_append_str(b, "\"id\":");
        jw_id(b, n->message_id);
        iy_buf_putc(b, ',');
    }
    iy_buf_append_str(b, "\"user_id\":");
    jw_id(b, n->user);
    iy_buf_append_str(b, ",\"channel\":");
    jw_id(b, n->channel);
    iy_buf_append_str(b, ",\"message_id\":");
    jw_id(b, n->message_id);
    iy_buf_append_str(b, ",\"from\":");
    jw_id(b, n->from);
    iy_buf_append_str(b, ",\"preview\":");
    jw_cstr(b, n->preview);
    if (nm && nm->from[0]) {
        iy_buf_append_str(b, ",\"from_name\":");
        jw_cstr(b, nm->from);
    }
    if (nm && nm->group[0]) {
        iy_buf_append_str(b, ",\"group\":");
        jw_cstr(b, nm->group);
    }
    iy_buf_putc(b, '}');
}

/* The origin (scheme://host[:port]) of an endpoint, for the VAPID audience. */
static int origin_of(const char *url, char *out, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = IY_EINVAL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) == CURLUE_OK && port)
            snprintf(out, n, "%s://%s:%s", scheme, host, port);
        else
            snprintf(out, n, "%s://%s", scheme, host);
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static int start_transfer(pushd *p, const iy_push_note *note, const iy_push_sub *sub, const note_names *nm)
{
    xfer *x = iy_calloc(1, sizeof *x);
    x->note = *note;
    x->kind = sub->kind;
    char hdr[256];
    iy_buf payload = { 0 };
    snprintf(hdr, sizeof hdr, "X-Iyagi-Notification-Id: %llu", (unsigned long long)note->message_id);
    x->headers = curl_slist_append(x->headers, hdr);
    x->headers = curl_slist_append(x->headers, "Expect:");
    if (sub->kind == IY_PUSH_WEBHOOK) {
        note_json(&x->body, note, nm, 0);
        char sig[72];
        webhook_signature(sub->secret, x->body.data, x->body.len, sig);
        snprintf(hdr, sizeof hdr, "X-Iyagi-Signature: %s", sig);
        x->headers = curl_slist_append(x->headers, hdr);
        x->headers = curl_slist_append(x->headers, "Content-Type: application/json");
    } else {
        char origin[IY_PUSH_URL_MAX + 1];
        iy_buf auth = { 0 };
        note_json(&payload, note, nm, 1);
        if (origin_of(sub->url, origin, sizeof origin) != 0 ||
            webpush_encrypt(sub->p256dh, sub->auth, (const uint8_t *)payload.data, payload.len, &x->body) != 0 ||
            vapid_authorization(p->v, origin, p->cfg.subject, wall_ms() / 1000, &auth) != 0) {
            iy_buf_free(&auth);
            iy_buf_free(&payload);
            curl_slist_free_all(x->headers);
            iy_buf_free(&x->body);
            iy_free(x);
            return IY_EINVAL;
        }
        iy_buf h = { 0 };
        iy_buf_append_str(&h, "Authorization: ");
        iy_buf_append(&h, auth.data, auth.len);
        x->headers = curl_slist_append(x->headers, iy_buf_cstr(&h));
        iy_buf_free(&h);
        iy_buf_free(&auth);
        x->headers = curl_slist_append(x->headers, "Content-Type: application/octet-stream");
        x->headers = curl_slist_append(x->headers, "Content-Encoding: aes128gcm");
        x->headers = curl_slist_append(x->headers, "TTL: 86400");
        x->headers = curl_slist_append(x->headers, "Urgency: normal");
    }
    iy_buf_free(&payload);
    CURL *e = x->easy = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, sub->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body.data ? x->body.data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)x->body.len);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "iyagi-push/1");
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, p);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_multi_add_handle(p->multi, e);
    x->next = p->xfers;
    if (p->xfers) p->xfers->prev = x;
    p->xfers = x;
    p->inflight++;
    return 0;
}

static int64_t backoff(pushd *p, uint32_t attempts)
{
    int64_t d = p->cfg.retry_base_ms;
    for (uint32_t i = 0; i < attempts && d < MAX_BACKOFF_MS; i++) d *= 2;
    if (d > MAX_BACKOFF_MS) d = MAX_BACKOFF_MS;
    /* ±20 % jitter, so that retries of a burst do not come back together. */
    double f = 0.8 + 0.4 * ((double)rand_r(&p->seed) / RAND_MAX);
    return (int64_t)((double)d * f);
}

static void xfer_free(pushd *p, xfer *x)
{
    if (x->prev) x->prev->next = x->next;
    else p->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    curl_multi_remove_handle(p->multi, x->easy);
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    iy_buf_free(&x->body);
    iy_free(x);
    p->inflight--;
}

static void finish_transfer(pushd *p, CURL *e, CURLcode res)
{
    xfer *x = NULL;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    int64_t now = wall_ms();
    if (res == CURLE_OK && status >= 200 && status < 300) {
        metrics_add(M_PUSH_SENT, 1);
        metrics_observe_push_ms(now - ((int64_t)(x->note.message_id >> 22) + ID_EPOCH_MS));
        report(p, &x->note, 1, 0, 0, 0);
    } else if (res == CURLE_OK && x->kind == IY_PUSH_WEBPUSH && (status == 404 || status == 410)) {
        metrics_add(M_PUSH_GONE, 1);
        iy_log_info("push: subscription %llu is gone (%ld); removed", (unsigned long long)x->note.sub, status);
        report(p, &x->note, 0, 0, 1, 0);
    } else if (now - x->note.created_ms > (int64_t)p->cfg.give_up_s * 1000) {
        metrics_add(M_PUSH_DEAD, 1);
        iy_log_warn("push: notification %llu to subscription %llu given up after %u attempts",
               (unsigned long long)x->note.message_id, (unsigned long long)x->note.sub, x->note.attempts + 1);
        report(p, &x->note, 0, 1, 0, 0);
    } else {
        metrics_add(M_PUSH_RETRIED, 1);
        report(p, &x->note, 0, 0, 0, now + backoff(p, x->note.attempts));
    }
    xfer_free(p, x);
}

static void submit_take(pushd *p, int64_t now)
{
    take_job *t = iy_calloc(1, sizeof *t);
    dbq_job_init(&t->j, DBQ_RUN);
    t->j.run = take_run;
    t->j.post = take_post;
    t->j.free = take_free;
    t->p = p;
    /* After a restart nothing of ours is in flight: our leased notes are due at once. */
    t->now = now;
    t->all = !p->started;
    t->max = MAX_INFLIGHT - p->inflight;
    if (dbq_submit(p->q, &t->j) != 0) {
        iy_free(t);
        return;
    }
    p->started = 1;
    p->taking = 1;
}

static void *pushd_main(void *arg)
{
    pushd *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stopping = p->stopping, kicked = p->kicked;
        dbq_job *results = p->results;
        p->results = NULL;
        p->kicked = 0;
        pthread_mutex_unlock(&p->mu);
        if (stopping) {
            for (dbq_job *j = results, *next; j; j = next) {
                next = j->_next;
                dbq_job_unref(j);
            }
            break;
        }
        for (dbq_job *j = results, *next; j; j = next) {
            next = j->_next;
            take_job *t = (take_job *)j;
            p->taking = 0;
            for (size_t i = 0; i < t->n; i++) {
                if (!t->subs[i].id) {
                    /* Deleted meanwhile (its notes went with it, unless a
                     * round queued this one at the same moment): settled. */
                    report(p, &t->notes[i], 0, 1, 0, 0);
                    continue;
                }
                if (p->cfg.online && p->cfg.online(p->cfg.online_ctx, t->notes[i].user)) {
                    /* Online on some node by now (the commit only knew this
                     * node's sockets): no notification. */
                    metrics_add(M_PUSH_SKIPPED, 1);
                    report(p, &t->notes[i], 1, 0, 0, 0);
                    continue;
                }
                if (start_transfer(p, &t->notes[i], &t->subs[i], &t->names[i]) != 0)
                    report(p, &t->notes[i], 0, 1, 0, 0); /* cannot be built: a dead letter */
            }
            if (t->n == t->max) kicked = 1; /* there may be more due */
            dbq_job_unref(j);
        }
        int64_t now = wall_ms();
        if (!p->taking && p->inflight < MAX_INFLIGHT && (kicked || now >= p->next_poll)) {
            submit_take(p, now);
            p->next_poll = now + (p->cfg.retry_base_ms < 1000 ? p->cfg.retry_base_ms : 1000);
        }
        int running = 0;
        curl_multi_perform(p->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(p->multi, &left)))
            if (m->msg == CURLMSG_DONE) finish_transfer(p, m->easy_handle, m->data.result);
        int64_t wait = p->next_poll - wall_ms();
        if (wait < 1) wait = 1;
        if (wait > 1000) wait = 1000;
        curl_multi_poll(p->multi, NULL, 0, (int)wait, NULL);
    }
    return NULL;
}

pushd *pushd_start(dbq *q, const vapid *v, const pushd_config *cfg)
{
    pushd *p = iy_calloc(1, sizeof *p);
    p->q = q;
    p->v = v;
    p->cfg = *cfg;
    p->seed = (unsigned)time(NULL);
    p->multi = curl_multi_init();
    pthread_mutex_init(&p->mu, NULL);
    if (!p->multi || pthread_create(&p->thread, NULL, pushd_main, p) != 0) {
        if (p->multi) curl_multi_cleanup(p->multi);
        pthread_mutex_destroy(&p->mu);
        iy_free(p);
        return NULL;
    }
    return p;
}

void pushd_kick(pushd *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->kicked = 1;
    pthread_mutex_unlock(&p->mu);
    curl_multi_wakeup(p->multi);
}

void pushd_stop(pushd *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_mutex_unlock(&p->mu);
    curl_multi_wakeup(p->multi);
    pthread_join(p->thread, NULL);
    /* Abandon what is in flight: the leases expire and they are sent again. */
    while (p->xfers) xfer_free(p, p->xfers);
    curl_multi_cleanup(p->multi);
    pthread_mutex_destroy(&p->mu);
    iy_free(p);
}
