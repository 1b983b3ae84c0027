/* proto.c — parsing of client frames and encoding of the contract's objects
 * (see proto.h).
 *
 * Parsing decodes the frame with jansson into a small DOM (frames are small,
 * apart from one text of at most ~1.2 MB), then reads each field the op
 * needs through a few typed getters that know the contract's rules:
 *
 *   frame ── json_loadb ──> object? ── rid ── op ── per-op fields ──> proto_req
 *                 │            │        │      │          │
 *                 └────────────┴────────┴──────┴──────────┴──> IY_EINVAL / IY_ETOOBIG + message
 *
 * rid is read before anything else can fail, so every error after it can be
 * echoed with the request's rid. Every string kept in a fixed array (rid,
 * token, cmid) is refused if it holds U+0000, since it is used as a C string
 * afterwards; only the message text keeps its length and may contain one.
 *
 * Messages put in errmsg never quote the input: they are plain ASCII and go
 * into error frames unchanged. */
#include "proto.h"
#include "jsonw.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/utf8.h"
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct proto__ctx {
    json_t *root;
    proto_req *req;
    char *errmsg;
    size_t errsz;
} proto__ctx;

static int proto__vfail(char *errmsg, size_t errsz, int err, const char *fmt, va_list ap)
{
    if (errmsg && errsz) vsnprintf(errmsg, errsz, fmt, ap);
    return err;
}

static int proto__fail(proto__ctx *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int proto__fail(proto__ctx *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    proto__vfail(c->errmsg, c->errsz, err, fmt, ap);
    va_end(ap);
    return err;
}

static int proto__fail_buf(char *errmsg, size_t errsz, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int proto__fail_buf(char *errmsg, size_t errsz, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    proto__vfail(errmsg, errsz, err, fmt, ap);
    va_end(ap);
    return err;
}

/* ---- shared validation ----------------------------------------------- */

int proto_parse_id(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20 || s[0] == '0') return IY_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return IY_EINVAL;
        if (v > (UINT64_MAX - d) / 10) return IY_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int proto_check_text(const char *s, size_t n, char *errmsg, size_t errsz)
{
    if (n == 0)
        return proto__fail_buf(errmsg, errsz, IY_EINVAL,
                               "text must be 1 to %d code points", IY_TEXT_MAX_CP);
    if (iy_utf8_validate(s, n) != 0)
        return proto__fail_buf(errmsg, errsz, IY_EINVAL, "text must be valid UTF-8");
    /* More than 4 bytes per allowed code point cannot fit; skip the count. */
    if (n > (size_t)IY_TEXT_MAX_CP * 4 || iy_utf8_count(s, n) > IY_TEXT_MAX_CP)
        return proto__fail_buf(errmsg, errsz, IY_ETOOBIG,
                               "text must be 1 to %d code points", IY_TEXT_MAX_CP);
    return 0;
}

/* ---- typed field getters --------------------------------------------- */

/* The field key of the frame, or NULL when it is absent or null. */
static json_t *proto__field(proto__ctx *c, const char *key)
{
    json_t *v = json_object_get(c->root, key);
    return v && !json_is_null(v) ? v : NULL;
}

/* A string of min..max bytes without U+0000, copied into dst[max + 1].
 * *present says whether the field was there; absent is not an error here. */
static int proto__get_str(proto__ctx *c, const char *key, size_t min, size_t max,
                          char *dst, int *present)
{
    json_t *v = proto__field(c, key);
    *present = 0;
    if (!v) return 0;
    if (!json_is_string(v)) return proto__fail(c, IY_EINVAL, "%s must be a string", key);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > max)
        return proto__fail(c, IY_ETOOBIG, "%s must be at most %zu bytes", key, max);
    if (n < min) return proto__fail(c, IY_EINVAL, "%s must not be empty", key);
    if (memchr(s, '\0', n)) return proto__fail(c, IY_EINVAL, "%s must not contain U+0000", key);
    memcpy(dst, s, n);
    dst[n] = '\0';
    *present = 1;
    return 0;
}

/* An id field; a missing required one is an error. */
static int proto__get_id(proto__ctx *c, const char *key, int required, uint64_t *out, int *present)
{
    json_t *v = proto__field(c, key);
    *present = v != NULL;
    if (!v) return required ? proto__fail(c, IY_EINVAL, "%s is required", key) : 0;
    if (!json_is_string(v) || proto_parse_id(json_string_value(v), json_string_length(v), out))
        return proto__fail(c, IY_EINVAL, "%s must be an id: a string of decimal digits", key);
    return 0;
}

/* An integer field in min..2^53. */
static int proto__get_uint(proto__ctx *c, const char *key, json_int_t min, int required,
                           uint64_t *out, int *present)
{
    json_t *v = proto__field(c, key);
    *present = v != NULL;
    if (!v) return required ? proto__fail(c, IY_EINVAL, "%s is required", key) : 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > PROTO_INT_MAX)
        return proto__fail(c, IY_EINVAL, "%s must be an integer from %lld to 2^53",
                           key, (long long)min);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int proto__get_limit(proto__ctx *c, int max, int dflt)
{
    json_t *v = proto__field(c, "limit");
    if (!v) {
        c->req->limit = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return proto__fail(c, IY_EINVAL, "limit must be an integer from 1 to %d", max);
    c->req->limit = (int)json_integer_value(v);
    return 0;
}

/* ---- one function per op --------------------------------------------- */

static int proto__auth(proto__ctx *c)
{
    int present, rc;
    rc = proto__get_str(c, "token", 1, IY_TOKEN_MAX, c->req->token, &present);
    if (rc) return rc;
    if (!present) return proto__fail(c, IY_EINVAL, "token is required");
    return 0;
}

static int proto__text(proto__ctx *c);

static int proto__send(proto__ctx *c)
{
    proto_req *r = c->req;
    int has_to, has_channel, rc;

    if ((rc = proto__get_id(c, "to", 0, &r->to, &has_to))) return rc;
    if ((rc = proto__get_id(c, "channel", 0, &r->channel, &has_channel))) return rc;
    if (has_to + has_channel != 1)
        return proto__fail(c, IY_EINVAL, "send needs exactly one of to, channel");

    if ((rc = proto_parse_attachments(proto__field(c, "attachments"), r->attachments, &r->nattachments,
                                      c->errmsg, c->errsz)))
        return rc;
    json_t *t = proto__field(c, "text");
    if (r->nattachments && (!t || (json_is_string(t) && json_string_length(t) == 0))) {
        r->text = iy_strndup("", 0);   /* a file without a caption */
        r->text_len = 0;
    } else if ((rc = proto__text(c))) {
        return rc;
    }
    if ((rc = proto__get_id(c, "reply_to", 0, &r->reply_to, &has_to))) return rc;
    return proto__get_str(c, "cmid", 1, IY_CMID_MAX, r->cmid, &r->has_cmid);
}

/* The text of send and edit: required, checked by proto_check_text, copied. */
static int proto__text(proto__ctx *c)
{
    json_t *t = proto__field(c, "text");
    if (!t) return proto__fail(c, IY_EINVAL, "text is required");
    if (!json_is_string(t)) return proto__fail(c, IY_EINVAL, "text must be a string");
    const char *s = json_string_value(t);
    size_t n = json_string_length(t);
    int rc = proto_check_text(s, n, c->errmsg, c->errsz);
    if (rc) return rc;
    c->req->text = iy_strndup(s, n);
    c->req->text_len = n;
    return 0;
}

static int proto__edit(proto__ctx *c)
{
    int present, rc;
    if ((rc = proto__get_id(c, "id", 1, &c->req->id, &present))) return rc;
    return proto__text(c);
}

int proto_parse_attachments(const void *vv, uint64_t out[IY_ATTACH_PER_MSG], uint32_t *n, char *errmsg,
                            size_t errsz)
{
    const json_t *v = vv;
    *n = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > IY_ATTACH_PER_MSG)
        return proto__fail_buf(errmsg, errsz, IY_EINVAL, "attachments must be an array of 1 to %d upload ids",
                               IY_ATTACH_PER_MSG);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *x = json_array_get(v, i);
        if (!json_is_string(x) || proto_parse_id(json_string_value(x), json_string_length(x), &out[*n]))
            return proto__fail_buf(errmsg, errsz, IY_EINVAL, "attachments must be an array of upload ids");
        (*n)++;
    }
    return 0;
}

int proto_check_emoji(const char *s, size_t n)
{
    if (n < 1 || n > IY_EMOJI_MAX || iy_utf8_validate(s, n) != 0) return IY_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] == 0x7f) return IY_EINVAL;
    return 0;
}

static int proto__react(proto__ctx *c)
{
    int present, rc;
    proto_req *r = c->req;
    if ((rc = proto__get_id(c, "id", 1, &r->id, &present))) return rc;
    json_t *e = proto__field(c, "emoji");
    if (!json_is_string(e) || proto_check_emoji(json_string_value(e), json_string_length(e)))
        return proto__fail(c, IY_EINVAL, "emoji must be 1 to %d bytes of UTF-8 without spaces", IY_EMOJI_MAX);
    json_t *on = proto__field(c, "on");
    if (on && !json_is_boolean(on)) return proto__fail(c, IY_EINVAL, "on must be true or false");
    r->on = on ? json_is_true(on) : 1;
    r->text = iy_strndup(json_string_value(e), json_string_length(e));
    r->text_len = json_string_length(e);
    return 0;
}

static int proto__delete(proto__ctx *c)
{
    int present;
    return proto__get_id(c, "id", 1, &c->req->id, &present);
}

static int proto__sync(proto__ctx *c)
{
    int present, rc;
    if ((rc = proto__get_uint(c, "after", 0, 0, &c->req->after, &present))) return rc;
    return proto__get_limit(c, IY_SYNC_MAX, IY_SYNC_DEFAULT);
}

static int proto__history(proto__ctx *c)
{
    proto_req *r = c->req;
    int present, rc;
    if ((rc = proto__get_id(c, "channel", 1, &r->channel, &present))) return rc;
    /* before_seq 0 would ask for the messages below the first: refuse it
     * rather than let it be mistaken for "no before_seq" further down. */
    if ((rc = proto__get_uint(c, "before_seq", 1, 0, &r->before_seq, &r->has_before))) return rc;
    if ((rc = proto__get_uint(c, "after_seq", 0, 0, &r->after_seq, &r->has_after))) return rc;
    if ((rc = proto__get_uint(c, "around_seq", 1, 0, &r->around_seq, &r->has_around))) return rc;
    if (r->has_before + r->has_after + r->has_around > 1)
        return proto__fail(c, IY_EINVAL, "history takes at most one of before_seq, after_seq, around_seq");
    return proto__get_limit(c, IY_PAGE_MAX, IY_PAGE_DEFAULT);
}

static int proto__read(proto__ctx *c)
{
    int present, rc;
    if ((rc = proto__get_id(c, "channel", 1, &c->req->channel, &present))) return rc;
    return proto__get_uint(c, "seq", 0, 1, &c->req->seq, &present);
}

static int proto__typing(proto__ctx *c)
{
    int present;
    return proto__get_id(c, "channel", 1, &c->req->channel, &present);
}

static int proto__presence(proto__ctx *c)
{
    proto_req *r = c->req;
    json_t *a = proto__field(c, "users");
    if (!a) return proto__fail(c, IY_EINVAL, "users is required");
    if (!json_is_array(a)) return proto__fail(c, IY_EINVAL, "users must be an array of ids");
    size_t n = json_array_size(a);
    if (n == 0) return proto__fail(c, IY_EINVAL, "users must not be empty");
    if (n > IY_PRESENCE_QUERY_MAX)
        return proto__fail(c, IY_ETOOBIG, "users must hold at most %d ids", IY_PRESENCE_QUERY_MAX);
    r->users = iy_malloc(n * sizeof *r->users);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_string(v) || proto_parse_id(json_string_value(v), json_string_length(v), &r->users[i]))
            return proto__fail(c, IY_EINVAL, "users must be an array of ids: strings of decimal digits");
    }   /* on error r->users is freed by proto_req_clear */
    r->nusers = n;
    return 0;
}

static int proto__hb(proto__ctx *c)
{
    (void)c;
    return 0;
}

static const struct {
    const char *name;
    int op;
    int (*parse)(proto__ctx *c);
} proto__ops[] = {
    { "auth", P_AUTH, proto__auth },
    { "send", P_SEND, proto__send },
    { "sync", P_SYNC, proto__sync },
    { "history", P_HISTORY, proto__history },
    { "read", P_READ, proto__read },
    { "typing", P_TYPING, proto__typing },
    { "presence", P_PRESENCE, proto__presence },
    { "hb", P_HB, proto__hb },
    { "edit", P_EDIT, proto__edit },
    { "delete", P_DELETE, proto__delete },
    { "react", P_REACT, proto__react },
};

/* A message for a jansson decoding error that never quotes the input
 * (jansson's own text may hold invalid UTF-8 from it). */
static int proto__json_error(proto__ctx *c, const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_invalid_utf8:
        return proto__fail(c, IY_EINVAL, "invalid JSON: strings must be valid UTF-8");
    case json_error_duplicate_key:
        return proto__fail(c, IY_EINVAL, "invalid JSON: duplicate key");
    case json_error_numeric_overflow:
        return proto__fail(c, IY_EINVAL, "invalid JSON: number out of range");
    default:
        return proto__fail(c, IY_EINVAL, "invalid JSON at byte %d", e->position);
    }
}

int proto_parse(const char *json, size_t len, proto_req *req, char *errmsg, size_t errsz)
{
    proto__ctx c = { NULL, req, errmsg, errsz };
    json_error_t jerr;
    int rc;

    memset(req, 0, sizeof *req);
    if (errmsg && errsz) errmsg[0] = '\0';
    if (len > IY_JSON_MAX) return proto__fail(&c, IY_ETOOBIG, "frame too large");

    c.root = json_loadb(json, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (!c.root) return proto__json_error(&c, &jerr);
    if (!json_is_object(c.root)) {
        rc = proto__fail(&c, IY_EINVAL, "a frame must be a JSON object");
        goto out;
    }

    if ((rc = proto__get_str(&c, "rid", 0, IY_RID_MAX, req->rid, &req->has_rid))) goto out;

    json_t *op = proto__field(&c, "op");
    if (!op || !json_is_string(op)) {
        rc = proto__fail(&c, IY_EINVAL, "op must be a string");
        goto out;
    }
    size_t i, n = json_string_length(op), nops = sizeof proto__ops / sizeof proto__ops[0];
    for (i = 0; i < nops; i++)
        if (strlen(proto__ops[i].name) == n && memcmp(proto__ops[i].name, json_string_value(op), n) == 0)
            break;
    if (i == nops) {
        rc = proto__fail(&c, IY_EINVAL, "unknown op");
        goto out;
    }
    req->op = proto__ops[i].op;
    rc = proto__ops[i].parse(&c);

out:
    json_decref(c.root);
    return rc;
}

void proto_req_clear(proto_req *req)
{
    iy_free(req->text);
    iy_free(req->users);
    memset(req, 0, sizeof *req);
}

/* ---- encoders -------------------------------------------------------- */

void proto_write_user(iy_buf *b, const iy_user *u)
{
    iy_buf_putc(b, '{');
    jw_key(b, "id"); jw_id(b, u->id);
    iy_buf_putc(b, ','); jw_key(b, "username"); jw_cstr(b, u->username);
    iy_buf_putc(b, ','); jw_key(b, "display_name"); jw_cstr(b, u->display_name);
    iy_buf_putc(b, '}');
}

void proto_write_channel(iy_buf *b, const iy_channel *c, int with_members)
{
    int group = c->kind == IY_GROUP;
    iy_buf_putc(b, '{');
    jw_key(b, "id"); jw_id(b, c->id);
    iy_buf_putc(b, ','); jw_key(b, "kind"); jw_cstr(b, group ? "group" : "direct");
    if (group) {
        iy_buf_putc(b, ','); jw_key(b, "name"); jw_cstr(b, c->name);
    }
    if (with_members) {
        iy_buf_putc(b, ','); jw_key(b, "members"); iy_buf_putc(b, '[');
        for (uint32_t i = 0; i < c->nmembers; i++) {
            if (i) iy_buf_putc(b, ',');
            jw_id(b, c->members[i]);
        }
        iy_buf_putc(b, ']');
    }
    if (group) {
        iy_buf_putc(b, ','); jw_key(b, "owner"); jw_id(b, c->owner);
    }
    iy_buf_putc(b, '}');
}

void proto_write_message(iy_buf *b, const iy_msg *m)
{
    iy_buf_putc(b, '{');
    jw_key(b, "id"); jw_id(b, m->id);
    iy_buf_putc(b, ','); jw_key(b, "channel"); jw_id(b, m->channel);
    iy_buf_putc(b, ','); jw_key(b, "seq"); jw_u64(b, m->seq);
    if (m->pos) {
        iy_buf_putc(b, ','); jw_key(b, "pos"); jw_u64(b, m->pos);
    }
    iy_buf_putc(b, ','); jw_key(b, "from"); jw_id(b, m->from);
    iy_buf_putc(b, ','); jw_key(b, "text"); jw_str(b, m->text, m->text_len);
    iy_buf_putc(b, ','); jw_key(b, "ts"); jw_i64(b, m->ts);
    if (m->cmid[0]) {
        iy_buf_putc(b, ','); jw_key(b, "cmid"); jw_cstr(b, m->cmid);
    }
    proto_write_event_fields(b, m);
    proto_write_mentions(b, m);
    proto_write_state(b, m);
    iy_buf_putc(b, '}');
}

void proto_write_attachment(iy_buf *b, uint64_t id, const char *name, const char *type, uint64_t size, int thumb)
{
    iy_buf_putc(b, '{');
    jw_key(b, "id"); jw_id(b, id);
    iy_buf_putc(b, ','); jw_key(b, "name"); jw_cstr(b, name);
    iy_buf_putc(b, ','); jw_key(b, "type"); jw_cstr(b, type);
    iy_buf_putc(b, ','); jw_key(b, "size"); jw_u64(b, size);
    if (thumb) iy_buf_append_str(b, ",\"thumb\":true");
    iy_buf_putc(b, '}');
}

void proto_write_state(iy_buf *b, const iy_msg *m)
{
    if (m->reply_to) {
        iy_buf_putc(b, ','); jw_key(b, "reply_to"); jw_id(b, m->reply_to);
        iy_buf_putc(b, ','); jw_key(b, "reply_seq"); jw_u64(b, m->reply_seq);
    }
    if (m->edited_ms) {
        iy_buf_putc(b, ','); jw_key(b, "edited_at"); jw_i64(b, m->edited_ms);
    }
    if (m->deleted) iy_buf_append_str(b, ",\"deleted\":true");
    if (m->atts && m->atts->n) {
        iy_buf_append_str(b, ",\"attachments\":[");
        for (uint32_t i = 0; i < m->atts->n; i++) {
            const iy_att *x = &m->atts->v[i];
            if (i) iy_buf_putc(b, ',');
            proto_write_attachment(b, x->id, x->name, x->type, x->size, x->thumb);
        }
        iy_buf_putc(b, ']');
    }
    if (m->reactions && m->reactions->n) {
        iy_buf_append_str(b, ",\"reactions\":[");
        for (uint32_t i = 0; i < m->reactions->n; i++) {
            const iy_reaction *x = &m->reactions->v[i];
            iy_buf_append_str(b, i ? ",{" : "{");
            jw_key(b, "emoji"); jw_cstr(b, x->emoji);
            iy_buf_putc(b, ','); jw_key(b, "count"); jw_u64(b, x->n);
            iy_buf_putc(b, ','); jw_key(b, "users"); iy_buf_putc(b, '[');
            for (uint32_t j = 0; j < x->n; j++) {
                if (j) iy_buf_putc(b, ',');
                jw_id(b, x->users[j]);
            }
            iy_buf_append_str(b, "]}");
        }
        iy_buf_putc(b, ']');
    }
}

void proto_write_mentions(iy_buf *b, const iy_msg *m)
{
    if (!m->nmentions) return;
    iy_buf_append_str(b, ",\"mentions\":[");
    for (uint32_t i = 0; i < m->nmentions && i < IY_MENTIONS_MAX; i++) {
        if (i) iy_buf_putc(b, ',');
        jw_id(b, m->mentions[i]);
    }
    iy_buf_putc(b, ']');
}

void proto_write_event_fields(iy_buf *b, const iy_msg *m)
{
    static const char *const names[] = { NULL, "member_added", "member_removed", "renamed", "edited", "deleted",
                                          "reaction", "reaction" };
    int event = m->event;
    if (event <= 0 || event > IY_EV_UNREACTED) return;
    iy_buf_putc(b, ','); jw_key(b, "event"); jw_cstr(b, names[event]);
    if (event == IY_EV_MEMBER_ADDED || event == IY_EV_MEMBER_REMOVED) {
        iy_buf_putc(b, ','); jw_key(b, "user"); jw_id(b, m->subject);
    } else if (iy_event_changes_message(event)) {
        iy_buf_putc(b, ','); jw_key(b, "target"); jw_id(b, m->subject);
    }
    if (event == IY_EV_REACTED || event == IY_EV_UNREACTED) {
        iy_buf_putc(b, ','); jw_key(b, "emoji"); jw_str(b, m->text ? m->text : "", m->text ? m->text_len : 0);
        iy_buf_append_str(b, event == IY_EV_REACTED ? ",\"on\":true" : ",\"on\":false");
    }
}

void proto_write_error(iy_buf *b, const char *rid, const char *code, const char *message)
{
    proto_write_error_retry(b, rid, code, message, 0);
}

void proto_write_error_retry(iy_buf *b, const char *rid, const char *code, const char *message,
                             int64_t retry_ms)
{
    iy_buf_append_str(b, "{\"op\":\"error\"");
    if (rid) {
        iy_buf_putc(b, ','); jw_key(b, "rid"); jw_cstr(b, rid);
    }
    iy_buf_putc(b, ','); jw_key(b, "code"); jw_cstr(b, code);
    iy_buf_putc(b, ','); jw_key(b, "message"); jw_cstr(b, message);
    if (retry_ms > 0) {
        iy_buf_putc(b, ','); jw_key(b, "retry_after_ms"); jw_i64(b, retry_ms);
    }
    iy_buf_putc(b, '}');
}

void proto_write_http_error(iy_buf *b, const char *code, const char *message)
{
    iy_buf_append_str(b, "{\"error\":{");
    jw_key(b, "code"); jw_cstr(b, code);
    iy_buf_putc(b, ','); jw_key(b, "message"); jw_cstr(b, message);
    iy_buf_append_str(b, "}}");
}
