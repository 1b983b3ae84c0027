/* test_rules.c — unit tests of the business rules (src/model/rules.h) and
 * the id generator (src/model/types.h): pure functions, no store. */
#include "t.h"
#include "base/err.h"
#include "base/alloc.h"
#include "model/rules.h"
#include <stdio.h>
#include <stdlib.h>

static iy_channel group(uint64_t owner, const uint64_t *m, uint32_t n)
{
    iy_channel c;
    memset(&c, 0, sizeof c);
    c.id = 500;
    c.kind = IY_GROUP;
    c.owner = owner;
    strcpy(c.name, "g");
    c.nmembers = n;
    memcpy(c.members, m, n * sizeof *m);
    return c;
}

static iy_send ev(uint64_t from, int event, uint64_t subject, const char *text)
{
    return (iy_send){ .from = from, .channel = 500, .event = event, .subject = subject,
                      .text = text, .text_len = text ? strlen(text) : 0, .cmid = "" };
}

static void test_shape(void)
{
    iy_send s = { .from = 1, .to = 2, .text = "x", .text_len = 1, .cmid = "c" };
    CHECK_EQ(rules_send_shape(&s), 0);
    s.channel = 9;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);           /* both */
    s.channel = 0, s.to = 0;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);           /* neither */
    s.to = 1;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);           /* to oneself */
    s.to = 2, s.from = 0;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);           /* nobody */
    s.from = 1, s.event = IY_EV_RENAMED;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);           /* an event to a user */
    s.to = 0, s.channel = 9;
    CHECK_EQ(rules_send_shape(&s), 0);
    s.event = IY_EV_DELETED + 1;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);           /* out of range */
    /* A change of a message names its target and nothing else. */
    iy_send e = { .from = 1, .target = 77, .text = "x", .text_len = 1, .cmid = "", .event = IY_EV_EDITED };
    CHECK_EQ(rules_send_shape(&e), 0);
    e.event = IY_EV_DELETED;
    CHECK_EQ(rules_send_shape(&e), 0);
    e.target = 0;
    CHECK_EQ(rules_send_shape(&e), IY_EINVAL);           /* no target */
    e.target = 77, e.channel = 9;
    CHECK_EQ(rules_send_shape(&e), IY_EINVAL);           /* and a channel */
    e.channel = 0, e.to = 2;
    CHECK_EQ(rules_send_shape(&e), IY_EINVAL);           /* and a user */
    e.to = 0, e.event = IY_EV_NONE;
    CHECK_EQ(rules_send_shape(&e), IY_EINVAL);           /* a target on a plain send */
    s.event = -1;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);
    s.event = 0;
    char longc[IY_CMID_MAX + 2];
    memset(longc, 'a', sizeof longc - 1);
    longc[sizeof longc - 1] = '\0';
    s.cmid = longc;
    CHECK_EQ(rules_send_shape(&s), IY_EINVAL);           /* cmid 65 bytes */
    longc[IY_CMID_MAX] = '\0';
    CHECK_EQ(rules_send_shape(&s), 0);                   /* 64 is fine */
    /* Events never use cmid idempotency. */
    s.event = IY_EV_RENAMED;
    CHECK(strcmp(rules_send_cmid(&s), "") == 0);
    s.event = IY_EV_NONE;
    CHECK(rules_send_cmid(&s) == longc);
    s.cmid = NULL;
    CHECK(strcmp(rules_send_cmid(&s), "") == 0);

    uint64_t a, b;
    rules_direct_pair(9, 4, &a, &b);
    CHECK(a == 4 && b == 9);
    rules_direct_pair(4, 9, &a, &b);
    CHECK(a == 4 && b == 9);
}

static void test_post_message(void)
{
    uint64_t m[] = { 10, 20, 30 };
    iy_channel c = group(10, m, 3);
    iy_stored out;
    iy_send s = ev(20, IY_EV_NONE, 0, "hi");
    CHECK_EQ(rules_post(&c, &s, 0, &out), 0);
    CHECK_EQ(out.nmembers, 3);
    CHECK(out.members[0] == 10 && out.members[2] == 30);
    CHECK_EQ(out.owner, 10);
    s.from = 40;
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_EFORBIDDEN);     /* not a member */
    /* A direct channel: members only, and no events. */
    iy_channel d = group(0, m, 2);
    d.kind = IY_DIRECT;
    s.from = 10;
    CHECK_EQ(rules_post(&d, &s, 0, &out), 0);
    CHECK_EQ(out.nmembers, 2);
    iy_send r = ev(10, IY_EV_RENAMED, 0, "x");
    CHECK_EQ(rules_post(&d, &r, 0, &out), IY_EINVAL);
}

static void test_change(void)
{
    uint64_t m[] = { 10, 20, 30 };
    iy_channel c = group(10, m, 3);
    iy_stored out;
    iy_msg t = { .id = 900, .channel = 500, .seq = 4, .from = 20, .ts = 1000000 };
    iy_send ed = { .from = 20, .target = 900, .text = "new", .text_len = 3, .cmid = "", .event = IY_EV_EDITED };
    iy_send del = { .from = 20, .target = 900, .text = "", .cmid = "", .event = IY_EV_DELETED };
    CHECK_EQ(rules_change(&c, &ed, &t, t.ts + 1, &out), 0);
    CHECK(out.nmembers == 3 && out.owner == 10);
    CHECK_EQ(rules_change(&c, &ed, &t, t.ts + IY_EDIT_WINDOW_MS, &out), 0);
    CHECK_EQ(rules_change(&c, &ed, &t, t.ts + IY_EDIT_WINDOW_MS + 1, &out), IY_EFORBIDDEN);  /* too late */
    CHECK_EQ(rules_change(&c, &del, &t, t.ts + 10 * IY_EDIT_WINDOW_MS, &out), 0);           /* delete: any time */
    ed.from = 10;
    CHECK_EQ(rules_change(&c, &ed, &t, t.ts, &out), IY_EFORBIDDEN);   /* the owner edits: no */
    del.from = 10;
    CHECK_EQ(rules_change(&c, &del, &t, t.ts, &out), 0);              /* the owner deletes: yes */
    del.from = 30;
    CHECK_EQ(rules_change(&c, &del, &t, t.ts, &out), IY_EFORBIDDEN);  /* another member: no */
    del.from = 40;
    CHECK_EQ(rules_change(&c, &del, &t, t.ts, &out), IY_ENOTFOUND);   /* a non-member learns nothing */
    del.from = 20;
    CHECK_EQ(rules_change(&c, &del, NULL, t.ts, &out), IY_ENOTFOUND);  /* no such message */
    CHECK_EQ(rules_change(NULL, &del, &t, t.ts, &out), IY_ENOTFOUND);
    t.deleted = 1;
    CHECK_EQ(rules_change(&c, &del, &t, t.ts, &out), IY_ENOTFOUND);   /* deleted already */
    t.deleted = 0, t.event = IY_EV_RENAMED;
    CHECK_EQ(rules_change(&c, &del, &t, t.ts, &out), IY_ENOTFOUND);   /* an event */
    t.event = IY_EV_NONE, t.channel = 501;
    CHECK_EQ(rules_change(&c, &del, &t, t.ts, &out), IY_ENOTFOUND);   /* another channel */
    /* a direct channel: only the author deletes */
    iy_channel d = group(0, m, 2);
    d.kind = IY_DIRECT;
    t.channel = 500, t.from = 10;
    del.from = 20;
    CHECK_EQ(rules_change(&d, &del, &t, t.ts, &out), IY_EFORBIDDEN);
    del.from = 10;
    CHECK_EQ(rules_change(&d, &del, &t, t.ts, &out), 0);
    CHECK_EQ(out.nmembers, 2);
}

static void test_reactions(void)
{
    uint64_t m[] = { 10, 20, 30 };
    iy_channel c = group(10, m, 3);
    iy_stored out;
    iy_msg t = { .id = 900, .channel = 500, .seq = 4, .from = 20, .ts = 1000000 };
    iy_send on = { .from = 30, .target = 900, .text = "👍", .text_len = strlen("👍"), .cmid = "", .event = IY_EV_REACTED };
    iy_send off = on;
    off.event = IY_EV_UNREACTED;
    CHECK_EQ(rules_send_shape(&on), 0);
    iy_send bad = on;
    bad.text_len = 0;
    CHECK_EQ(rules_send_shape(&bad), IY_EINVAL);
    bad.text = "0123456789012345678901234567890123", bad.text_len = 33;
    CHECK_EQ(rules_send_shape(&bad), IY_EINVAL);
    CHECK_EQ(rules_change(&c, &off, &t, t.ts, &out), IY_ECONFLICT);   /* nothing to take back */
    CHECK_EQ(rules_change(&c, &on, &t, t.ts + 10 * IY_EDIT_WINDOW_MS, &out), 0);   /* any member, any time */
    rules_react_apply(&t.reactions, on.text, on.text_len, 30, 1);
    CHECK(t.reactions && t.reactions->n == 1 && t.reactions->v[0].n == 1);
    CHECK_EQ(rules_change(&c, &on, &t, t.ts, &out), IY_ECONFLICT);    /* once */
    on.from = 10;
    CHECK_EQ(rules_change(&c, &on, &t, t.ts, &out), 0);
    rules_react_apply(&t.reactions, on.text, on.text_len, 10, 1);
    CHECK_EQ(t.reactions->v[0].n, 2);
    on.from = 40;
    CHECK_EQ(rules_change(&c, &on, &t, t.ts, &out), IY_ENOTFOUND);   /* a non-member */
    /* encoded and decoded the same */
    uint8_t buf[sizeof(iy_reactions)];
    size_t n = iy_reactions_encode(t.reactions, buf);
    CHECK_EQ(n, iy_reactions_size(t.reactions));
    int badf = 0;
    iy_reactions *d = iy_reactions_decode(buf, n, &badf);
    CHECK(!badf && d && d->n == 1 && d->v[0].n == 2 && d->v[0].users[0] == 30 && d->v[0].users[1] == 10 &&
          strcmp(d->v[0].emoji, "👍") == 0);
    iy_free(d);
    CHECK(iy_reactions_decode(buf, n - 1, &badf) == NULL && badf);   /* truncated */
    badf = 0;
    CHECK(iy_reactions_decode((const uint8_t *)"", 0, &badf) == NULL && !badf);
    /* the limits */
    char e[16];
    for (int i = 1; i < IY_REACTIONS_MAX; i++) {
        snprintf(e, sizeof e, "e%d", i);
        rules_react_apply(&t.reactions, e, strlen(e), 30, 1);
    }
    CHECK_EQ(t.reactions->n, IY_REACTIONS_MAX);
    iy_send more = { .from = 30, .target = 900, .text = "new", .text_len = 3, .cmid = "", .event = IY_EV_REACTED };
    CHECK_EQ(rules_change(&c, &more, &t, t.ts, &out), IY_ETOOBIG);
    /* taking the last one back frees them */
    rules_react_apply(&t.reactions, "👍", strlen("👍"), 30, 0);
    rules_react_apply(&t.reactions, "👍", strlen("👍"), 10, 0);
    for (int i = 1; i < IY_REACTIONS_MAX; i++) {
        snprintf(e, sizeof e, "e%d", i);
        rules_react_apply(&t.reactions, e, strlen(e), 30, 0);
    }
    CHECK(t.reactions == NULL);
}

static void test_post_add(void)
{
    uint64_t m[] = { 10, 30 };
    iy_channel c = group(10, m, 2);
    iy_stored out;
    iy_send s = ev(30, IY_EV_MEMBER_ADDED, 20, NULL);      /* any member may add */
    CHECK_EQ(rules_post(&c, &s, 1, &out), 0);
    CHECK_EQ(c.nmembers, 3);
    CHECK(c.members[0] == 10 && c.members[1] == 20 && c.members[2] == 30);   /* ascending */
    CHECK_EQ(out.nmembers, 3);                              /* the new member gets the event */
    CHECK_EQ(rules_post(&c, &s, 1, &out), IY_ECONFLICT);  /* already a member */
    s.subject = 25;
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_ENOTFOUND);  /* no such user */
    s.from = 99;
    CHECK_EQ(rules_post(&c, &s, 1, &out), IY_EFORBIDDEN); /* an outsider */
    /* Full: IY_GROUP_MAX members. */
    uint64_t big[IY_GROUP_MAX];
    for (int i = 0; i < IY_GROUP_MAX; i++) big[i] = 1000 + (uint64_t)i;
    iy_channel f = group(1000, big, IY_GROUP_MAX);
    iy_send add = ev(1000, IY_EV_MEMBER_ADDED, 5, NULL);
    CHECK_EQ(rules_post(&f, &add, 1, &out), IY_ETOOBIG);
    CHECK_EQ(f.nmembers, IY_GROUP_MAX);
    /* The check order: conflict before not-found before too-big. */
    add.subject = 1050;
    CHECK_EQ(rules_post(&f, &add, 0, &out), IY_ECONFLICT);
    add.subject = 5;
    CHECK_EQ(rules_post(&f, &add, 0, &out), IY_ENOTFOUND);
}

static void test_post_remove(void)
{
    uint64_t m[] = { 10, 20, 30 };
    iy_channel c = group(20, m, 3);
    iy_stored out;
    iy_send s = ev(10, IY_EV_MEMBER_REMOVED, 30, NULL);
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_EFORBIDDEN);  /* not the owner */
    s.from = 20, s.subject = 99;
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_ENOTFOUND);   /* not a member */
    s.subject = 30;
    CHECK_EQ(rules_post(&c, &s, 0, &out), 0);              /* the owner removes */
    CHECK_EQ(c.nmembers, 2);
    CHECK_EQ(out.nmembers, 3);                              /* the removed one learns of it */
    CHECK_EQ(out.members[2], 30);
    CHECK_EQ(out.owner, 20);
    /* The owner leaving hands the group to the lowest remaining id. */
    s.from = s.subject = 20;
    CHECK_EQ(rules_post(&c, &s, 0, &out), 0);
    CHECK_EQ(c.owner, 10);
    CHECK_EQ(out.owner, 10);
    CHECK_EQ(c.nmembers, 1);
    s.from = s.subject = 10;                                /* the last one leaves */
    CHECK_EQ(rules_post(&c, &s, 0, &out), 0);
    CHECK_EQ(c.nmembers, 0);
    CHECK_EQ(c.owner, 0);
    /* In an empty group every event is forbidden. */
    iy_send add = ev(10, IY_EV_MEMBER_ADDED, 20, NULL);
    CHECK_EQ(rules_post(&c, &add, 1, &out), IY_EFORBIDDEN);
}

static void test_post_rename(void)
{
    uint64_t m[] = { 10, 20 };
    iy_channel c = group(10, m, 2);
    iy_stored out;
    iy_send s = ev(20, IY_EV_RENAMED, 0, "new");
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_EFORBIDDEN);  /* not the owner */
    s.from = 10;
    CHECK_EQ(rules_post(&c, &s, 0, &out), 0);
    CHECK(strcmp(c.name, "new") == 0);
    s.text_len = 0;
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_EINVAL);      /* empty */
    char name[IY_GROUP_NAME_MAX + 1];
    memset(name, 'n', sizeof name);
    s.text = name, s.text_len = IY_GROUP_NAME_MAX + 1;
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_EINVAL);      /* too long */
    s.text_len = IY_GROUP_NAME_MAX;
    CHECK_EQ(rules_post(&c, &s, 0, &out), 0);
    CHECK_EQ(strlen(c.name), IY_GROUP_NAME_MAX);
    s.text = "a\0b", s.text_len = 3;
    CHECK_EQ(rules_post(&c, &s, 0, &out), IY_EINVAL);      /* a NUL */
}

static void test_group_members(void)
{
    uint64_t in[] = { 30, 10, 30, 20, 0 }, out[IY_GROUP_MAX];
    uint32_t n = 0;
    CHECK_EQ(rules_group_members(20, "g", in, 5, out, &n), 0);
    CHECK_EQ(n, 3);                                         /* sorted, no repeats, no 0 */
    CHECK(out[0] == 10 && out[1] == 20 && out[2] == 30);
    CHECK_EQ(rules_group_members(20, "g", in + 3, 1, out, &n), IY_EINVAL);   /* only the creator */
    uint64_t many[IY_GROUP_MAX + 1];
    for (int i = 0; i <= IY_GROUP_MAX; i++) many[i] = 100 + (uint64_t)i;
    CHECK_EQ(rules_group_members(100, "g", many, IY_GROUP_MAX, out, &n), 0);   /* creator among them */
    CHECK_EQ(n, IY_GROUP_MAX);
    CHECK_EQ(rules_group_members(1, "g", many, IY_GROUP_MAX, out, &n), IY_ETOOBIG);  /* 101 */
    char name[IY_GROUP_NAME_MAX + 2];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK_EQ(rules_group_members(20, name, in, 5, out, &n), IY_EINVAL);
}

static void test_read_friend_push(void)
{
    CHECK_EQ(rules_read_seq(5, 10, 3), 5);
    CHECK_EQ(rules_read_seq(50, 10, 3), 10);                /* clamped to the newest */
    CHECK_EQ(rules_read_seq(2, 10, 3), 3);                  /* never back */
    CHECK_EQ(rules_read_seq(7, 0, 0), 0);                   /* an empty channel */

    CHECK_EQ(rules_friend_put(IY_FRIEND_NONE), IY_FRIEND_OUTGOING);
    CHECK_EQ(rules_friend_put(IY_FRIEND_OUTGOING), IY_FRIEND_OUTGOING);   /* idempotent */
    CHECK_EQ(rules_friend_put(IY_FRIEND_INCOMING), IY_FRIEND_MUTUAL);     /* acceptance */
    CHECK_EQ(rules_friend_put(IY_FRIEND_MUTUAL), IY_FRIEND_MUTUAL);

    iy_msg m;
    memset(&m, 0, sizeof m);
    m.from = 1;
    CHECK(rules_push_wanted(&m, 2, 0));
    CHECK(!rules_push_wanted(&m, 2, 1));                    /* online */
    CHECK(!rules_push_wanted(&m, 1, 0));                    /* the sender */
    m.event = IY_EV_MEMBER_ADDED;
    CHECK(!rules_push_wanted(&m, 2, 0));                    /* events are not pushed */
}

static void test_ids(void)
{
    iy_idgen g = { .node = 5, .last = 0 };
    uint64_t prev = 0;
    int increasing = 1, node_ok = 1;
    for (int i = 0; i < 20000; i++) {                        /* more than 4096 per ms: borrows ms */
        uint64_t id = iy_id_next(&g);
        increasing &= id > prev;
        node_ok &= ((id >> 12) & IY_NODE_MAX) == 5;
        prev = id;
    }
    CHECK(increasing);
    CHECK(node_ok);
    /* A clock behind the last id (a restart with the clock set back). */
    iy_idgen h = { .node = 1, .last = (uint64_t)1 << 62 };
    uint64_t id = iy_id_next(&h);
    CHECK(id > ((uint64_t)1 << 62));
    CHECK_EQ((id >> 12) & IY_NODE_MAX, 1);
    /* ts is the id's ms. */
    iy_idgen k = { .node = 0, .last = 0 };
    uint64_t x = iy_id_next(&k);
    CHECK(iy_id_ts(x) > IY_ID_EPOCH_MS);
}

static size_t names_of(const char *text, char (*names)[IY_USERNAME_MAX + 1], size_t max)
{
    return rules_mention_names(text, strlen(text), names, max);
}

static void test_mention_names(void)
{
    char nm[IY_MENTIONS_MAX][IY_USERNAME_MAX + 1];
    CHECK_EQ(names_of("hi @alice and @bob_2.", nm, 20), 2);
    CHECK(strcmp(nm[0], "alice") == 0 && strcmp(nm[1], "bob_2") == 0);
    CHECK_EQ(names_of("@Alice, @ALICE and @alice", nm, 20), 1);          /* one name, case folded */
    CHECK(strcmp(nm[0], "alice") == 0);
    CHECK_EQ(names_of("mail me at bob@example.com", nm, 20), 0);         /* not after a name character */
    CHECK_EQ(names_of("@ab @abc @@abc x@abc", nm, 20), 1);               /* too short; @@; in a word */
    CHECK(strcmp(nm[0], "abc") == 0);
    CHECK_EQ(names_of("@abcdefghijklmnopqrstuvwxyz0123456 (33)", nm, 20), 0);   /* too long */
    CHECK_EQ(names_of("@abcdefghijklmnopqrstuvwxyz012345 (32)", nm, 20), 1);
    CHECK_EQ(names_of("안녕 @민수 @kim.lee!", nm, 20), 1);                 /* usernames are ASCII */
    CHECK(strcmp(nm[0], "kim.lee") == 0);
    CHECK_EQ(names_of("@", nm, 20), 0);
    CHECK_EQ(names_of("", nm, 20), 0);
    CHECK_EQ(names_of("@aaa @bbb @ccc", nm, 2), 2);                      /* at most max */
    CHECK_EQ(rules_mention_names("@alice", 3, nm, 20), 0);               /* only len bytes: "@al" */

    iy_msg m;
    memset(&m, 0, sizeof m);
    m.nmentions = 2;
    m.mentions[0] = 7;
    m.mentions[1] = 9;
    CHECK(rules_mentions(&m, 9) && !rules_mentions(&m, 8));
}

int main(void)
{
    test_mention_names();
    test_shape();
    test_post_message();
    test_change();
    test_reactions();
    test_post_add();
    test_post_remove();
    test_post_rename();
    test_group_members();
    test_read_friend_push();
    test_ids();
    return T_DONE("rules");
}
