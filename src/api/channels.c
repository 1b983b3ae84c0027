/* channels.c — channels, groups, membership, history and sending over HTTP.
 *
 * Sends and membership changes (which are messages of their channel,
 * model/types.h enum iy_event) authenticate first, then go to the commit
 * round as DBQ_SEND jobs like a WebSocket send; history pages are read on a
 * reader thread. A new group's members learn of it at once through a bus
 * notice published after the group was stored. */
#include "api_int.h"
#include "../chat/limiter.h"
#include "../chat/post.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include "../model/rules.h"
#include <stdlib.h>
#include <string.h>

/* ---- one channel, the list ---- */

typedef struct channel_job {
    api_job a;
    iy_channel ch;
} channel_job;

/* 0 with x->ch filled when the caller may read the channel; else answered. */
static int load_channel(store *s, channel_job *x)
{
    int rc = store_channel_get(s, x->a.id, &x->ch);
    if (rc == IY_ENOTFOUND) { api_fail(&x->a, IY_ENOTFOUND, "no such channel"); return rc; }
    if (rc) { api_fail(&x->a, rc, "storage error"); return rc; }
    if (!rules_is_member(&x->ch, x->a.user)) {
        api_fail(&x->a, IY_EFORBIDDEN, "not a member of this channel");
        return IY_EFORBIDDEN;
    }
    return 0;
}

static void channel_get_store(store *s, api_job *a)
{
    channel_job *x = (channel_job *)a;
    if (load_channel(s, x) != 0) return;
    iy_buf_append_str(&a->body, "{\"channel\":");
    proto_write_channel(&a->body, &x->ch, 1);
    /* Every member's read seq, so that "Read by" survives a reload. */
    iy_buf_append_str(&a->body, ",\"read\":[");
    for (uint32_t i = 0; i < x->ch.nmembers; i++) {
        uint64_t seq = 0;
        int rc = store_read_get(s, x->ch.members[i], x->a.id, &seq);
        if (rc && rc != IY_ENOTFOUND) {
            api_fail(a, rc, "storage error");
            return;
        }
        if (i) iy_buf_putc(&a->body, ',');
        iy_buf_append_str(&a->body, "{\"user_id\":");
        jw_id(&a->body, x->ch.members[i]);
        iy_buf_append_str(&a->body, ",\"seq\":");
        jw_u64(&a->body, rc ? 0 : seq);
        iy_buf_putc(&a->body, '}');
    }
    iy_buf_append_str(&a->body, "]}");
}

void channels_get(conn *c, const http_request *req, uint64_t id)
{
    channel_job *x = api_job_new(c, req, sizeof *x, channel_get_store, 1, NULL);
    x->a.id = id;
    api_submit(c, &x->a);
}

/* One row of GET /v1/channels, kept to sort by newest activity. */
typedef struct channel_row {
    uint64_t newest;      /* id of the last message (time-sortable), or the channel id */
    size_t off, len;      /* the row's JSON in the scratch buffer */
} channel_row;

static int row_newest_first(const void *x, const void *y)
{
    const channel_row *a = x, *b = y;
    return a->newest < b->newest ? 1 : a->newest > b->newest ? -1 : 0;
}

/* Unread messages of channel that mention user: among the newest
 * IY_PAGE_MAX unread ones (a longer backlog counts from its newest). */
static uint64_t unread_mentions(store *s, uint64_t channel, uint64_t user, uint64_t read, uint64_t newest)
{
    if (newest <= read) return 0;
    uint64_t unread = newest - read, n = 0;
    iy_msg_list l = { 0 };
    if (store_history(s, channel, UINT64_MAX, 0, unread < IY_PAGE_MAX ? (int)unread : IY_PAGE_MAX, &l) != 0) return 0;
    for (size_t i = 0; i < l.n; i++) n += l.v[i].seq > read && l.v[i].from != user && rules_mentions(&l.v[i], user);
    iy_msg_list_clear(&l);
    return n;
}

static void channels_store(store *s, api_job *a)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    int rc = store_user_channels(s, a->user, &ids, &n);
    if (rc) { api_fail(a, rc, "storage error"); return; }
    iy_channel *ch = iy_malloc(sizeof *ch);
    channel_row *rows = iy_calloc(n ? n : 1, sizeof *rows);
    size_t nrows = 0;
    iy_buf tmp = { 0 };
    for (size_t i = 0; i < n; i++) {
        iy_msg last;
        memset(&last, 0, sizeof last);
        if (store_channel_get(s, ids[i], ch) != 0) continue;
        int has_last = store_channel_last(s, ids[i], &last) == 0;
        uint64_t read = 0;
        store_read_get(s, a->user, ids[i], &read);
        channel_row *r = &rows[nrows++];
        r->newest = has_last ? last.id : ch->id;
        r->off = tmp.len;
        iy_buf_append_str(&tmp, "{\"channel\":");
        proto_write_channel(&tmp, ch, 1);
        iy_buf_append_str(&tmp, ",\"last_message\":");
        if (has_last) proto_write_message(&tmp, &last);
        else iy_buf_append_str(&tmp, "null");
        iy_buf_append_str(&tmp, ",\"unread\":");
        jw_u64(&tmp, has_last && last.seq > read ? last.seq - read : 0);
        iy_buf_append_str(&tmp, ",\"mentions\":");
        jw_u64(&tmp, has_last ? unread_mentions(s, ids[i], a->user, read, last.seq) : 0);
        iy_buf_append_str(&tmp, store_muted(s, a->user, ids[i]) == 1 ? ",\"muted\":true}" : ",\"muted\":false}");
        r->len = tmp.len - r->off;
        iy_msg_clear(&last);
    }
    qsort(rows, nrows, sizeof *rows, row_newest_first);
    iy_buf_append_str(&a->body, "{\"channels\":[");
    for (size_t i = 0; i < nrows; i++) {
        if (i) iy_buf_putc(&a->body, ',');
        iy_buf_append(&a->body, tmp.data + rows[i].off, rows[i].len);
    }
    iy_buf_append_str(&a->body, "]}");
    iy_buf_free(&tmp);
    iy_free(rows);
    iy_free(ch);
    iy_free(ids);
}

void channels_list(conn *c, const http_request *req)
{
    api_submit(c, api_job_new(c, req, sizeof(api_job), channels_store, 1, NULL));
}

/* ---- mute: a member's own, no push notifications for the channel ---- */

static void mute_store(store *s, api_job *a, int on)
{
    channel_job *x = (channel_job *)a;
    if (load_channel(s, x) != 0) return;
    int rc = store_mute_set(s, a->user, a->id, on);
    if (rc) api_fail(a, rc, "storage error");
    else a->status = 204;
}

static void mute_on_store(store *s, api_job *a) { mute_store(s, a, 1); }
static void mute_off_store(store *s, api_job *a) { mute_store(s, a, 0); }

void channels_mute(conn *c, const http_request *req, uint64_t id, int on)
{
    channel_job *x = api_job_new(c, req, sizeof *x, on ? mute_on_store : mute_off_store, 1, NULL);
    x->a.id = id;
    api_submit(c, &x->a);
}

/* ---- groups ---- */

typedef struct group_job {
    api_job a;
    char name[IY_GROUP_NAME_MAX + 1];
    uint64_t members[IY_GROUP_MAX];     /* as asked, without repeats */
    size_t n;
    iy_channel ch;                      /* the group created */
} group_job;

static void group_create_store(store *s, api_job *a)
{
    group_job *x = (group_job *)a;
    uint64_t m[IY_GROUP_MAX];
    uint32_t nm = 0;
    int rc = rules_group_members(a->user, x->name, x->members, x->n, m, &nm);
    if (rc == 0) rc = store_group_create(s, a->user, x->name, m, nm, &x->ch);
    if (rc == IY_ETOOBIG) api_fail(a, IY_ETOOBIG, "a group has at most 100 members");
    else if (rc == IY_ENOTFOUND) api_fail(a, IY_ENOTFOUND, "no such user");
    else if (rc == IY_EINVAL) api_fail(a, IY_EINVAL, "a group needs at least 2 members");
    else if (rc) api_fail(a, rc, "storage error");
    else a->status = 201;
}

/* The answer, and every open socket of every member (the creator's too)
 * learns of the group at once: {"op":"channel","channel":{...}}, not
 * stored (offline devices find it in GET /v1/channels). */
static void group_created(conn *c, api_job *a)
{
    group_job *x = (group_job *)a;
    iy_buf f = { 0 };
    iy_buf_append_str(&f, "{\"op\":\"channel\",\"channel\":");
    proto_write_channel(&f, &x->ch, 1);
    iy_buf_putc(&f, '}');
    bus_notify(a->svc->bus, bus_notice_new(x->ch.members, x->ch.nmembers, f.data, f.len));
    iy_buf_reset(&a->body);
    iy_buf_append_str(&a->body, "{\"channel\":");
    proto_write_channel(&a->body, &x->ch, 1);
    iy_buf_putc(&a->body, '}');
    conn_http_respond(c, 201, "application/json", a->body.data, a->body.len);
    iy_buf_free(&f);
    api_job_drop(a);
}

void channels_group_create(conn *c, const http_request *req)
{
    json_t *o = api_parse_body(c, req);
    if (!o) return;
    group_job *x = api_job_new(c, req, sizeof *x, group_create_store, 1, NULL);
    x->a.then = group_created;
    if (api_get_str(c, o, "name", x->name, sizeof x->name, 1) < 0) goto out;
    if (!x->name[0]) { conn_http_error(c, IY_EINVAL, "name must not be empty"); goto out; }
    json_t *m = json_object_get(o, "members");
    if (!json_is_array(m)) { conn_http_error(c, IY_EINVAL, "members must be an array of user ids"); goto out; }
    if (json_array_size(m) > IY_GROUP_MAX) { conn_http_error(c, IY_ETOOBIG, "a group has at most 100 members"); goto out; }
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *v = json_array_get(m, i);
        uint64_t id;
        if (!json_is_string(v) || proto_parse_id(json_string_value(v), json_string_length(v), &id)) {
            conn_http_error(c, IY_EINVAL, "members must be an array of user ids");
            goto out;
        }
        int dup = 0;
        for (size_t k = 0; k < x->n; k++) dup |= x->members[k] == id;
        if (!dup) x->members[x->n++] = id;
    }
    json_decref(o);
    api_submit(c, &x->a);
    return;
out:
    json_decref(o);
    api_job_drop(&x->a);
}

/* ---- history (reader thread) ---- */

typedef struct history_job {
    api_job a;
    store_page page;
} history_job;

/* GET /v1/channels/{id}/messages needs no order against the bus, so the
 * token, the membership and the page are all read from committed data. */
static void history_read(store_reader *r, dbq_job *j)
{
    history_job *x = (history_job *)j;
    api_job *a = &x->a;
    iy_msg_list l = { 0 };
    iy_buf_reset(&a->body);
    int rc = store_reader_session(r, a->token, &a->user, a->device);
    if (rc == IY_ENOTFOUND) { api_fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
    if (rc) { api_fail(a, rc, "storage error"); return; }
    rc = store_reader_is_member(r, a->id, a->user);
    if (rc == IY_ENOTFOUND) { api_fail(a, IY_ENOTFOUND, "no such channel"); return; }
    if (rc == IY_EFORBIDDEN) { api_fail(a, IY_EFORBIDDEN, "not a member of this channel"); return; }
    if (rc == 0)
        rc = store_reader_page(r, a->id, &x->page, &l);
    if (rc) {
        api_fail(a, rc, "storage error");
    } else {
        iy_buf_putc(&a->body, '{');
        api_write_messages(&a->body, &l);
        iy_buf_putc(&a->body, '}');
    }
    iy_msg_list_clear(&l);
}

void channels_history(conn *c, const http_request *req, uint64_t channel)
{
    uint64_t before = 0, after = 0, around = 0, limit = IY_PAGE_DEFAULT;
    int has_b = 0, has_a = 0, has_r = 0, has_l = 0;
    if (api_query_num(c, req, "before_seq", 1, PROTO_INT_MAX, &before, &has_b) ||
        api_query_num(c, req, "after_seq", 0, PROTO_INT_MAX, &after, &has_a) ||
        api_query_num(c, req, "around_seq", 1, PROTO_INT_MAX, &around, &has_r) ||
        api_query_num(c, req, "limit", 1, IY_PAGE_MAX, &limit, &has_l))
        return;
    if (has_b + has_a + has_r > 1) {
        conn_http_error(c, IY_EINVAL, "give at most one of before_seq, after_seq, around_seq");
        return;
    }
    history_job *x = api_job_new(c, req, sizeof *x, NULL, 1, NULL);
    x->a.j.read = history_read;
    x->a.id = channel;
    x->page = (store_page){ .before = before, .after = after, .around = around, .has_before = has_b,
                            .has_after = has_a, .has_around = has_r, .limit = (int)limit };
    api_submit_read(c, &x->a);
}

/* ---- sending over HTTP: authenticate, then a send job ----
 * Also carries membership changes, which are messages of their channel. */

/* What a send or membership change answers: 201 {message}, 200 {channel}, 204. */
enum send_reply { REPLY_MESSAGE, REPLY_CHANNEL, REPLY_EMPTY, REPLY_EDITED };

typedef struct send_req {
    api_job a;                /* authentication */
    int to_user;              /* POST /v1/users/{id}/messages: id is the user */
    char cmid[IY_CMID_MAX + 1];
    size_t text_len;          /* of a.j.text */
    int event;                /* enum iy_event; 0: a user's message */
    uint64_t subject;         /* the member added or removed */
    uint64_t target;          /* the message edited or deleted */
    uint64_t reply_to;        /* a message: the one it replies to */
    uint64_t attachments[IY_ATTACH_PER_MSG];   /* a message: the uploads it carries */
    uint32_t nattachments;
    int reply;                /* enum send_reply */
} send_req;

typedef struct http_send {
    dbq_job j;                /* DBQ_SEND */
    iothread *t;
    uint64_t conn_id;
    char cmid[IY_CMID_MAX + 1];
    int reply;                /* enum send_reply */
    uint8_t token[32];        /* for the follow-up read of REPLY_CHANNEL */
} http_send;

static void http_send_free(dbq_job *j)
{
    iy_free(j->stored.msg.atts);
    iy_free(j->text);
    iy_free(j);
}

static const char *send_error_message(int err, const iy_send *in)
{
    int event = in->event;
    const char *t = post_error_text(err, in);
    if (t) return t;
    switch (err) {
    case IY_ENOTFOUND: return event ? "no such user, channel or member" : "no such user or channel";
    case IY_EFORBIDDEN: return event ? "only the owner may do that" : "not a member of this channel";
    case IY_EINVAL: return event ? "not possible on this channel" : "cannot send a message to yourself";
    case IY_ECONFLICT: return "already a member";
    case IY_ETOOBIG: return "a group has at most 100 members";
    case IY_ERATE: return "too many new chats; retry later";
    default: return "storage unavailable, retry";
    }
}

static void http_send_done(dbq_job *j)
{
    http_send *h = (http_send *)j;
    conn *c = iothread_conn(h->t, h->conn_id);
    if (c && !c->closing) {
        int idempotent = j->err == IY_ECONFLICT && (j->send.event == IY_EV_REACTED || j->send.event == IY_EV_UNREACTED);
        if (idempotent) {
            conn_http_respond(c, 204, NULL, "", 0);   /* PUT or DELETE again: already so */
        } else if (j->err != 0 && j->err != IY_EEXIST) {
            conn_http_error(c, j->err, send_error_message(j->err, &j->send));
        } else if (h->reply == REPLY_EDITED) {
            /* the edited message as it is now */
            iy_msg m = { .id = j->send.target, .channel = j->stored.msg.channel, .seq = j->stored.target_seq,
                         .from = j->stored.target_from, .ts = iy_id_ts(j->send.target),
                         .text = j->text, .text_len = j->send.text_len, .edited_ms = j->stored.msg.ts };
            iy_buf b = { 0 };
            iy_buf_append_str(&b, "{\"message\":");
            proto_write_message(&b, &m);
            iy_buf_putc(&b, '}');
            conn_http_respond(c, 200, "application/json", b.data, b.len);
            iy_buf_free(&b);
        } else if (h->reply == REPLY_EMPTY) {
            conn_http_respond(c, 204, NULL, "", 0);
        } else if (h->reply == REPLY_CHANNEL) {
            channel_job *g = api_job_new(c, NULL, sizeof *g, channel_get_store, 1, NULL);
            memcpy(g->a.token, h->token, 32);
            g->a.id = j->stored.msg.channel;
            api_submit(c, &g->a);
        } else {
            iy_msg m = j->stored.msg;
            m.text = j->text;
            m.text_len = j->send.text_len;
            iy_buf b = { 0 };
            iy_buf_append_str(&b, "{\"message\":");
            proto_write_message(&b, &m);
            iy_buf_putc(&b, '}');
            conn_http_respond(c, j->err == IY_EEXIST ? 200 : 201, "application/json", b.data, b.len);
            iy_buf_free(&b);
        }
    }
    dbq_job_unref(j);
}

/* After authentication: the send (or membership event) goes to the commit round. */
static void send_authed(conn *c, api_job *a)
{
    send_req *x = (send_req *)a;
    service *svc = a->svc;
    int64_t wait = svc->limits ? limiter_take(svc->limits->send_user, a->user, (int64_t)now_ms()) : 0;
    if (wait) {
        conn_http_error_retry(c, IY_ERATE, "too many messages; retry with the same cmid later", wait);
        api_job_drop(a);
        return;
    }
    if (svc_shed_send(svc)) {
        metrics_add(M_SHED, 1);
        conn_http_error(c, IY_EUNAVAIL, "server busy, retry with the same cmid");
        api_job_drop(a);
        return;
    }
    http_send *h = iy_calloc(1, sizeof *h);
    dbq_job_init(&h->j, DBQ_SEND);
    h->j.done = http_send_done;
    h->j.free = http_send_free;
    h->j.origin = c->t;
    h->t = c->t;
    h->conn_id = c->id;
    h->reply = x->reply;
    memcpy(h->token, a->token, 32);
    if (!x->event) memcpy(h->cmid, x->cmid, sizeof h->cmid);
    h->j.text = a->j.text;
    a->j.text = NULL;
    h->j.send = (iy_send){ .from = a->user, .channel = x->to_user ? 0 : a->id, .to = x->to_user ? a->id : 0,
                           .text = h->j.text ? h->j.text : "", .text_len = x->text_len,
                           .cmid = h->cmid, .event = x->event, .subject = x->subject };
    if (x->target) h->j.send.channel = 0, h->j.send.target = x->target;
    h->j.send.reply_to = x->reply_to;
    memcpy(h->j.attachments, x->attachments, sizeof h->j.attachments);
    h->j.send.attachments = h->j.attachments;
    h->j.send.nattachments = x->nattachments;
    h->j.origin_thread = c->t->index;
    h->j.origin_conn = 0;
    c->http_busy = 1;
    conn_pause(c);
    if (dbq_submit(svc->dbq, &h->j) != 0) {
        conn_http_error(c, IY_EUNAVAIL, "server is shutting down");
        dbq_job_unref(&h->j);
    }
    api_job_drop(a);
}

void channels_send(conn *c, const http_request *req, uint64_t id, int to_user)
{
    json_t *o = api_parse_body(c, req);
    if (!o) return;
    send_req *x = api_job_new(c, req, sizeof *x, NULL, 1, NULL);
    x->a.id = id;
    x->to_user = to_user;
    json_t *t = json_object_get(o, "text");
    char msg[160];
    int rc = proto_parse_attachments(json_object_get(o, "attachments"), x->attachments, &x->nattachments, msg,
                                     sizeof msg);
    if (rc) { conn_http_error(c, rc, msg); goto out; }
    if (x->nattachments && (!t || json_is_null(t))) t = json_string("");   /* a file without a caption */
    else json_incref(t);
    json_object_set_new(o, "text", t ? t : json_null());
    t = json_object_get(o, "text");
    if (!json_is_string(t)) { conn_http_error(c, IY_EINVAL, "text must be a string"); goto out; }
    if (!(x->nattachments && json_string_length(t) == 0)) {
        rc = proto_check_text(json_string_value(t), json_string_length(t), msg, sizeof msg);
        if (rc) { conn_http_error(c, rc, msg); goto out; }
    }
    if (api_get_str(c, o, "cmid", x->cmid, sizeof x->cmid, 0) < 0) goto out;
    json_t *rt = json_object_get(o, "reply_to");
    if (rt && !json_is_null(rt) &&
        (!json_is_string(rt) || proto_parse_id(json_string_value(rt), json_string_length(rt), &x->reply_to))) {
        conn_http_error(c, IY_EINVAL, "reply_to must be a message id");
        goto out;
    }
    x->text_len = json_string_length(t);
    x->a.j.text = iy_strndup(json_string_value(t), x->text_len);
    x->reply = REPLY_MESSAGE;
    x->a.then = send_authed;
    json_decref(o);
    api_submit(c, &x->a);
    return;
out:
    json_decref(o);
    api_job_drop(&x->a);
}

void channels_change(conn *c, const http_request *req, uint64_t id, int event, const char *emoji)
{
    send_req *x = api_job_new(c, req, sizeof *x, NULL, 1, NULL);
    x->target = id;
    x->event = event;
    x->reply = event == IY_EV_EDITED ? REPLY_EDITED : REPLY_EMPTY;
    if (emoji) {
        x->text_len = strlen(emoji);
        x->a.j.text = iy_strndup(emoji, x->text_len);
    }
    if (event == IY_EV_EDITED) {
        json_t *o = api_parse_body(c, req);
        if (!o) { api_job_drop(&x->a); return; }
        json_t *t = json_object_get(o, "text");
        char msg[160];
        int rc = json_is_string(t) ? proto_check_text(json_string_value(t), json_string_length(t), msg, sizeof msg) : IY_EINVAL;
        if (rc) {
            conn_http_error(c, rc, json_is_string(t) ? msg : "text must be a string");
            json_decref(o);
            api_job_drop(&x->a);
            return;
        }
        x->text_len = json_string_length(t);
        x->a.j.text = iy_strndup(json_string_value(t), x->text_len);
        json_decref(o);
    }
    x->a.then = send_authed;
    api_submit(c, &x->a);
}

void channels_membership(conn *c, const http_request *req, uint64_t channel, int event, uint64_t subject)
{
    send_req *x = api_job_new(c, req, sizeof *x, NULL, 1, NULL);
    x->a.id = channel;
    x->event = event;
    x->subject = subject;
    x->reply = event == IY_EV_MEMBER_REMOVED ? REPLY_EMPTY : REPLY_CHANNEL;
    if (event == IY_EV_MEMBER_ADDED || event == IY_EV_RENAMED) {
        json_t *o = api_parse_body(c, req);
        if (!o) { api_job_drop(&x->a); return; }
        if (event == IY_EV_MEMBER_ADDED) {
            json_t *v = json_object_get(o, "user_id");
            if (!json_is_string(v) || proto_parse_id(json_string_value(v), json_string_length(v), &x->subject)) {
                json_decref(o);
                conn_http_error(c, IY_EINVAL, "user_id must be a user id");
                api_job_drop(&x->a);
                return;
            }
        } else {
            char name[IY_GROUP_NAME_MAX + 1];
            int rc = api_get_str(c, o, "name", name, sizeof name, 1);
            if (rc < 0 || !name[0]) {
                if (rc >= 0) conn_http_error(c, IY_EINVAL, "name must not be empty");
                json_decref(o);
                api_job_drop(&x->a);
                return;
            }
            x->text_len = strlen(name);
            x->a.j.text = iy_strndup(name, x->text_len);
        }
        json_decref(o);
    }
    x->a.then = send_authed;
    api_submit(c, &x->a);
}
