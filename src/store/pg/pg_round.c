/* pg_round.c — the commit round of the PostgreSQL backend (store_int.h):
 * load locks and reads what the round's sends touch, commit writes what the
 * round recorded; one transaction from load to commit, held open on the
 * storage thread's connection while the rules run on the view (round.c).
 *
 * Load: one exchange (pipeline, one Sync), READ COMMITTED:
 *
 *   BEGIN
 *   L1  channels addressed by id, and the direct channels of the round's
 *       pairs (looked up in directs), locked: ORDER BY id FOR UPDATE
 *   L2  inbox_heads of every member of those channels and of every user
 *       key, locked: ORDER BY user_id FOR UPDATE (a deleted user keeps its
 *       head row for the channels it was in: a new direct channel asks
 *       store_round_user_live, post.c)
 *   L3  the cmids (from, cmid) of the sends          } after the user locks:
 *   L4  the round's pairs in directs, again           } a fresh snapshot each
 *   L5  the blocks against the senders by the users they send to
 *       (store_round_blocked; L1 brings those of each direct channel and
 *       the mutes of each channel, store_round_muted)
 *
 * Every writer of channel and inbox-head rows is a round, and every round
 * locks channels first, then users, each in id order (the statements run
 * in pipeline order; ORDER BY puts the lock step above the sort), so two
 * rounds never wait on each other in a cycle: no deadlock between nodes.
 * Every other row a round writes is keyed by a locked channel or user:
 * messages, cmids, inbox, reads, channel_members, push_notes (sub,
 * channel), directs (a, b), so two rounds never meet there outside those
 * locks. Other writers of those rows hold one row at a time (read_set,
 * push_done), skip locked rows (push_take), or lock in the round's order
 * (push_sub_delete: one subscription's notes by channel).
 * Holding the channel locks, members cannot change under L2; holding the
 * user locks, no other round can be between its own load and commit for a
 * sender of ours or for a pair of ours, so L3 sees every cmid committed for
 * our senders and L4 every direct channel made for our pairs. If L4 finds a
 * pair that L1 did not (another node created it between L1 and L2), the
 * view would lack a lock on that channel: the load is rolled back and
 * started again (bounded; then IY_EUNAVAIL). Only then is the view filled.
 * So is a load whose lock wait outlasted the statement timeout (the server
 * answered: hot rows, not an outage): nothing is acknowledged before the
 * commit, so the round waits its turn again instead of failing its sends.
 *
 * Messages changed by the sends (edits, deletes, reactions) or replied to
 * (r->targets; a reply's target is only read: its seq, and rules_reply).
 * Before the load, target_locate finds each one's channel by id alone (T0:
 * the messages_id index, an unlocked implicit transaction of its own,
 * before the round's BEGIN: a message never moves channel), so that the
 * channel joins L1's locks. After the load, inside the round's transaction
 * and under those locks, targets_load reads their current state in one
 * statement (T1: the whole row, body and reactions included, which the
 * round then owns, round_put_target): every writer of a message row is a
 * round holding its channel's lock, so the state read stays current until
 * the commit. One extra round trip per target, and one per round that has
 * any: rare for edits and deletes, but every reaction and reply pays them
 * (T0's 16 probes included).
 *
 * Commit: one exchange, every write as one multi-row statement over
 * unnest() of binary arrays, then COMMIT (synchronous_commit on):
 *
 *   C1  new direct channels: channels rows (with their final seq)
 *   C2  ... and their directs rows
 *   C3  channels changed by events: members, owner, name, seq
 *   C4  the seq of every other channel that got messages
 *   C5  channel_members added (new directs, MEMBER_ADDED)
 *   C6  channel_members removed (MEMBER_REMOVED)
 *   C7  messages (with the id and seq each replies to)
 *   C8  inbox rows          C9  inbox heads (new pos)
 *   C10 cmids             C11 the senders' read state (forward only)
 *   C12 push notes: one per subscription of each pushed user, collapsing
 *       into the pending note of the same (subscription, channel)
 *   C13 the changed messages (targets): body, mentions, edited_ms, deleted,
 *       reactions (each as the round leaves it: a reaction keeps the
 *       loaded body, T1 reads it for that)
 *   C14 this node's last id          COMMIT
 *
 * The updates join their target to unnest() of the keys and also name the
 * keys with = ANY, so that the target is reached through its primary key
 * (an index scan with the array), never scanned whole.
 *
 * The membership index is written as the net change (loaded members vs
 * the final ones), which is what applying the events in order leaves.
 * Statements with nothing to write are not sent. A round is two round
 * trips plus one WAL flush, whatever its size.
 *
 * Failure. Any error, a lost connection or a passed deadline before the
 * COMMIT's answer returns IY_EUNAVAIL or IY_EIO and acknowledges nothing;
 * round_release rolls back what is still open (or the server does, when
 * the connection was closed). A commit that did happen but whose answer
 * was lost is reported as failed too: the client's retry with its cmid
 * finds the original. Deadlocks and serialization failures, which the
 * lock order rules out between rounds, would be IY_EUNAVAIL too. */
#include "pg_int.h"
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/kvmap.h"
#include "../../base/log.h"
#include "../../model/rules.h"
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

/* Each attempt after the first follows a pair whose channel another node
 * made between our channel and user locks; with thousands of new pairs
 * racing on several nodes (the first messages of 1,000 pairs at once) 4 was
 * seen to run out. */
#define LOAD_ATTEMPTS 12
#define LOCK_WAIT_RETRIES 1   /* a round waits at most 2 statement timeouts for its locks */

static const char SQL_BEGIN[] = "BEGIN ISOLATION LEVEL READ COMMITTED";
static const char SQL_COMMIT[] = "COMMIT";

/* The channel ids of the round: addressed ($1) and the pairs' ($2, $3).
 * Lookups by a list of keys are written as LATERAL (... LIMIT 1) probes
 * (OFFSET 0 where a key has several rows): the subquery is not flattened
 * into a join, so each key is an index probe whatever the planner thinks
 * of the list's size (a hash join would scan the whole table), with the
 * partition of each probe chosen at run time. */
#define DIRECT_OF(p) \
    "LATERAL (SELECT channel_id FROM directs WHERE a = " p ".a AND b = " p ".b LIMIT 1) AS d"
#define ROUND_CHANNELS \
    "ARRAY(SELECT unnest($1::int8[]) UNION ALL SELECT d.channel_id" \
    " FROM unnest($2::int8[], $3::int8[]) AS p(a, b), " DIRECT_OF("p") ")"
/* With each channel, its mutes (the members who muted it: a column of the
 * row, so no extra read) and, for a direct channel addressed by id, the
 * members who blocked the other (probes of the blocks key; a send by `to`
 * is covered by L5). */
static const char SQL_L1[] =
    "SELECT c.id, c.kind, c.owner, c.seq, c.name, c.members,"
    " c.muted,"
    " CASE WHEN c.kind = 1 AND c.id = ANY ($1::int8[]) THEN ARRAY(SELECT b.blocker FROM blocks AS b"
    " WHERE b.blocker = ANY (c.members) AND b.blocked = ANY (c.members)) ELSE '{}'::int8[] END"
    " FROM channels AS c WHERE c.id = ANY (" ROUND_CHANNELS ") ORDER BY c.id FOR UPDATE";
static const char SQL_L2[] =
    "SELECT user_id, pos FROM inbox_heads WHERE user_id = ANY (ARRAY("
    "SELECT unnest(c.members) FROM channels AS c WHERE c.id = ANY (" ROUND_CHANNELS ")"
    " UNION ALL SELECT unnest($4::int8[]))) ORDER BY user_id FOR UPDATE";
static const char SQL_L3[] =
    "SELECT k.u, k.m, c.channel_id, c.seq, c.msg_id, c.sender_pos"
    " FROM unnest($1::int8[], $2::text[]) AS k(u, m), LATERAL (SELECT channel_id, seq, msg_id,"
    " sender_pos FROM cmids WHERE user_id = k.u AND cmid = k.m LIMIT 1) AS c";
static const char SQL_L4[] =
    "SELECT p.a, p.b FROM unnest($1::int8[], $2::int8[]) AS p(a, b), " DIRECT_OF("p");
/* The blocks that may stop a send to a user (`to`: the user keys, $1)
 * by a sender of the round ($2), whether their direct channel exists yet
 * or not (sends by channel id: L1). Both keys of the primary key are
 * lists: index probes, whatever the size of the table. */
static const char SQL_L5[] =
    "SELECT blocker, blocked FROM blocks WHERE blocker = ANY ($1::int8[]) AND blocked = ANY ($2::int8[])";

static const char SQL_C1[] =
    "INSERT INTO channels (id, kind, owner, seq, name, members)"
    " SELECT t.id, 1, 0, t.seq, '', ARRAY[t.a, t.b]"
    " FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) AS t(id, a, b, seq)";
static const char SQL_C2[] =
    "INSERT INTO directs (a, b, channel_id) SELECT * FROM unnest($2::int8[], $3::int8[], $1::int8[])";
static const char SQL_C3[] =
    "UPDATE channels AS c SET owner = t.owner, name = t.name, seq = t.seq,"
    " members = ($5::int8[])[t.off + 1 : t.off + t.n]"
    " FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $6::int4[], $7::int4[])"
    " AS t(id, owner, name, seq, off, n) WHERE c.id = t.id AND c.id = ANY ($1::int8[])";
static const char SQL_C4[] =
    "UPDATE channels AS c SET seq = t.seq FROM unnest($1::int8[], $2::int8[]) AS t(id, seq)"
    " WHERE c.id = t.id AND c.id = ANY ($1::int8[])";
static const char SQL_C5[] =
    "INSERT INTO channel_members (user_id, channel_id) SELECT * FROM unnest($1::int8[], $2::int8[])"
    " ON CONFLICT DO NOTHING";
static const char SQL_C6[] =
    "DELETE FROM channel_members AS m USING unnest($1::int8[], $2::int8[]) AS t(u, c)"
    " WHERE m.user_id = t.u AND m.channel_id = t.c AND m.user_id = ANY ($1::int8[])";
static const char SQL_C7[] =
    "INSERT INTO messages (channel_id, seq, id, from_id, subject, event, cmid, body, mentions,"
    " reply_to, reply_seq, attachments)"
    " SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int2[],"
    " $7::text[], $8::bytea[], $9::bytea[], $10::int8[], $11::int8[], $12::bytea[])";
static const char SQL_C8[] =
    "INSERT INTO inbox (user_id, pos, channel_id, seq)"
    " SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[])";
static const char SQL_C9[] =
    "UPDATE inbox_heads AS h SET pos = t.pos FROM unnest($1::int8[], $2::int8[]) AS t(u, pos)"
    " WHERE h.user_id = t.u AND h.user_id = ANY ($1::int8[])";
static const char SQL_C10[] =
    "INSERT INTO cmids (user_id, cmid, channel_id, seq, msg_id, sender_pos)"
    " SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])";
static const char SQL_C11[] =
    "INSERT INTO reads AS r (user_id, channel_id, seq)"
    " SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[])"
    " ON CONFLICT (user_id, channel_id) DO UPDATE SET seq = GREATEST(r.seq, EXCLUDED.seq)";
static const char SQL_C12[] =
    "INSERT INTO push_notes (sub_id, channel_id, user_id, message_id, from_id, created_ms, due_ms,"
    " attempts, preview)"
    " SELECT s.id, t.c, t.u, t.m, t.f, $6::int8, $6::int8, 0, t.p"
    " FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::bytea[]) AS t(u, c, m, f, p),"
    " LATERAL (SELECT id FROM push_subs WHERE user_id = t.u OFFSET 0) AS s"
    " ON CONFLICT (sub_id, channel_id) DO UPDATE SET user_id = EXCLUDED.user_id,"
    " message_id = EXCLUDED.message_id, from_id = EXCLUDED.from_id, preview = EXCLUDED.preview";

/* A message by id alone (the channel is not known yet): a probe of
 * messages_id in each partition. Events are never changed. */
static const char SQL_T0[] = "SELECT channel_id FROM messages WHERE id = $1::int8 AND event = 0";
/* The current state of the targets ($3: their index in r->targets), each
 * a probe of its channel's partition. */
static const char SQL_T1[] =
    "SELECT t.i, " PGS_MSG_COLS " FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS t(ch, id, i),"
    " LATERAL (SELECT * FROM messages WHERE channel_id = t.ch AND id = t.id AND event = 0 LIMIT 1) AS m";
static const char SQL_C13[] =
    "UPDATE messages AS m SET body = t.body, mentions = t.ment, edited_ms = t.ed, deleted = t.del,"
    " reactions = t.reac, attachments = t.att"
    " FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::bytea[], $5::bytea[], $6::int8[], $7::bool[],"
    " $8::bytea[], $9::bytea[]) AS t(ch, seq, id, body, ment, ed, del, reac, att)"
    " WHERE m.channel_id = t.ch AND m.seq = t.seq AND m.id = t.id"
    " AND m.channel_id = ANY ($1::int8[]) AND m.seq = ANY ($2::int8[])";

/* The round's uploads, locked until the commit (two sends of one upload on
 * two nodes: the second waits, then finds it bound). */
static const char SQL_A0[] =
    "SELECT id, uploader, channel_id, message_id, size, created_ms, thumb, type, name FROM attachments"
    " WHERE id = ANY ($1::int8[]) ORDER BY id FOR UPDATE";
/* ... and bound to their messages. */
static const char SQL_C14[] =
    "UPDATE attachments AS a SET channel_id = t.ch, message_id = t.m"
    " FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS t(id, ch, m) WHERE a.id = t.id";

/* The backend's part of a round (r->be). */
typedef struct pgs_round {
    int tx;                     /* the round's transaction is open */
    size_t nloaded;             /* r->chans[0, nloaded) were loaded; the rest are created */
    uint64_t *orig;             /* their members when loaded, concatenated */
    size_t *orig_off;
    uint32_t *orig_n;
} pgs_round;

/* ---- load ---------------------------------------------------------------------- */

/* The key arrays of a round's load. */
typedef struct load_keys {
    pgs_arr chans, pa, pb, users, cu, cm, senders;
    uint32_t ncmids;
} load_keys;

static void keys_build(load_keys *k, const store_round *r)
{
    pgs__arr_begin(&k->chans, PGS_OID_INT8);
    for (size_t i = 0; i < r->nchan_keys; i++) pgs__arr_i64(&k->chans, r->chan_keys[i]);
    pgs__arr_begin(&k->pa, PGS_OID_INT8);
    pgs__arr_begin(&k->pb, PGS_OID_INT8);
    for (size_t i = 0; i < r->npair_keys; i++) {
        pgs__arr_i64(&k->pa, r->pair_keys[2 * i]);
        pgs__arr_i64(&k->pb, r->pair_keys[2 * i + 1]);
    }
    pgs__arr_begin(&k->users, PGS_OID_INT8);
    for (size_t i = 0; i < r->nuser_keys; i++) pgs__arr_i64(&k->users, r->user_keys[i]);
    pgs__arr_begin(&k->cu, PGS_OID_INT8);
    pgs__arr_begin(&k->cm, PGS_OID_TEXT);
    for (size_t i = 0; i < r->nsends; i++) {
        const iy_send *in = &r->sends[i];
        const char *cmid = rules_send_cmid(in);
        if (rules_send_shape(in) != 0 || !cmid[0]) continue;
        pgs__arr_i64(&k->cu, in->from);
        pgs__arr_bytes(&k->cm, cmid, strlen(cmid));
    }
    k->ncmids = k->cu.n;
    pgs__arr_begin(&k->senders, PGS_OID_INT8);
    for (size_t i = 0; i < r->nsends; i++)
        if (r->sends[i].event == IY_EV_NONE && rules_send_shape(&r->sends[i]) == 0)
            pgs__arr_i64(&k->senders, r->sends[i].from);
    pgs__arr_end(&k->senders);
    pgs__arr_end(&k->chans);
    pgs__arr_end(&k->pa);
    pgs__arr_end(&k->pb);
    pgs__arr_end(&k->users);
    pgs__arr_end(&k->cu);
    pgs__arr_end(&k->cm);
}

static void keys_free(load_keys *k)
{
    pgs__arr_free(&k->chans);
    pgs__arr_free(&k->pa);
    pgs__arr_free(&k->pb);
    pgs__arr_free(&k->users);
    pgs__arr_free(&k->cu);
    pgs__arr_free(&k->cm);
    pgs__arr_free(&k->senders);
}

/* 1 if L4 found a pair whose direct channel L1 did not lock. */
static int pair_appeared(const PGresult *l1, const PGresult *l4)
{
    iy_kvmap locked = { 0 };
    uint64_t m[IY_GROUP_MAX + 1];
    uint32_t n;
    uint8_t k[16];
    const uint8_t *v;
    size_t vl;
    int appeared = 0;
    for (int i = 0; i < PQntuples(l1); i++) {
        if (pgs__r_i16(l1, i, 1) != IY_DIRECT) continue;
        if (pgs__r_arr_i64(l1, i, 5, m, IY_GROUP_MAX + 1, &n) == 0 && n == 2) {
            round_pair_key(k, m[0], m[1]);
            iy_kv_put(&locked, k, 16, "", 0);
        }
    }
    for (int i = 0; !appeared && l4 && i < PQntuples(l4); i++) {
        round_pair_key(k, pgs__r_i64(l4, i, 0), pgs__r_i64(l4, i, 1));
        appeared = iy_kv_get(&locked, k, 16, &v, &vl) != 1;
    }
    iy_kv_free(&locked);
    return appeared;
}

/* Puts L1's channels, L2's users and L3's cmids into the view. 0, IY_EIO. */
static int view_fill(store_round *r, pgs_round *be, const PGresult *l1, const PGresult *l2,
                     const PGresult *l3, const PGresult *l5)
{
    for (int i = 0; l5 && i < PQntuples(l5); i++) round_put_block(r, pgs__r_i64(l5, i, 0), pgs__r_i64(l5, i, 1));
    int n1 = PQntuples(l1);
    iy_channel *ch = iy_malloc(sizeof *ch);
    int rc = 0;
    be->orig = iy_malloc(((size_t)n1 * (IY_GROUP_MAX + 1) + 1) * sizeof *be->orig);
    be->orig_off = iy_malloc(((size_t)n1 + 1) * sizeof *be->orig_off);
    be->orig_n = iy_malloc(((size_t)n1 + 1) * sizeof *be->orig_n);
    size_t off = 0;
    for (int i = 0; rc == 0 && i < n1; i++) {
        memset(ch, 0, sizeof *ch);
        ch->id = pgs__r_i64(l1, i, 0);
        ch->kind = pgs__r_i16(l1, i, 1);
        ch->owner = pgs__r_i64(l1, i, 2);
        if ((rc = pgs__r_str(l1, i, 4, ch->name, sizeof ch->name)) != 0) break;
        if ((rc = pgs__r_arr_i64(l1, i, 5, ch->members, IY_GROUP_MAX + 1, &ch->nmembers)) != 0) break;
        round_put_channel(r, ch, pgs__r_i64(l1, i, 3));
        uint64_t who[IY_GROUP_MAX + 1];
        uint32_t nwho = 0;
        if ((rc = pgs__r_arr_i64(l1, i, 6, who, IY_GROUP_MAX + 1, &nwho)) != 0) break;
        for (uint32_t k = 0; k < nwho; k++) round_put_mute(r, ch->id, who[k]);
        if ((rc = pgs__r_arr_i64(l1, i, 7, who, IY_GROUP_MAX + 1, &nwho)) != 0) break;
        for (uint32_t k = 0; k < nwho && ch->nmembers == 2; k++)
            round_put_block(r, who[k], ch->members[0] == who[k] ? ch->members[1] : ch->members[0]);
        if (ch->kind == IY_DIRECT && ch->nmembers == 2)
            round_put_pair(r, ch->members[0], ch->members[1], ch->id);
        size_t ci = (size_t)(round_chan_get(r, ch->id) - r->chans);   /* == i: ids are unique */
        be->orig_off[ci] = off;
        be->orig_n[ci] = ch->nmembers;
        memcpy(be->orig + off, ch->members, ch->nmembers * sizeof *ch->members);
        off += ch->nmembers;
    }
    iy_free(ch);
    be->nloaded = r->nchans;
    for (int i = 0; rc == 0 && i < PQntuples(l2); i++)
        round_put_user(r, pgs__r_i64(l2, i, 0), pgs__r_i64(l2, i, 1));
    for (int i = 0; rc == 0 && l3 && i < PQntuples(l3); i++) {
        size_t cl;
        const char *cmid = pgs__r_bytes(l3, i, 1, &cl);
        round_put_cmid(r, pgs__r_i64(l3, i, 0), cmid, cl, pgs__r_i64(l3, i, 2), pgs__r_i64(l3, i, 3),
                       pgs__r_i64(l3, i, 4), pgs__r_i64(l3, i, 5));
    }
    return rc;
}

/* The last error was a statement or lock timeout on a live connection. */
static int lock_wait_timed_out(const pgs_conn *pc)
{
    return pc->c && (strcmp(pc->sqlstate, "57014") == 0 || strcmp(pc->sqlstate, "55P03") == 0);
}

int pgs__round_load(store *st, store_round *r)
{
    pgs_store *s = (pgs_store *)st;
    pgs_round *be = iy_calloc(1, sizeof *be);
    r->be = be;
    if (r->nchan_keys == 0 && r->npair_keys == 0 && r->nuser_keys == 0) return 0;   /* nothing valid */

    int64_t deadline = pgs__deadline();
    load_keys k;
    memset(&k, 0, sizeof k);
    keys_build(&k, r);
    pgs_params p1 = { 0 }, p2 = { 0 }, p3 = { 0 }, p4 = { 0 };
    pgs__p_buf(&p1, &k.chans.b);
    pgs__p_buf(&p1, &k.pa.b);
    pgs__p_buf(&p1, &k.pb.b);
    p2 = p1;
    pgs__p_buf(&p2, &k.users.b);
    pgs__p_buf(&p3, &k.cu.b);
    pgs__p_buf(&p3, &k.cm.b);
    pgs__p_buf(&p4, &k.pa.b);
    pgs__p_buf(&p4, &k.pb.b);
    pgs_params p5 = { 0 };
    pgs__p_buf(&p5, &k.users.b);
    pgs__p_buf(&p5, &k.senders.b);

    int rc = IY_EUNAVAIL, lock_waits = 0, raced = 0;
    for (int attempt = 0; attempt < LOAD_ATTEMPTS; attempt++) {
        raced = 0;
        pgs_pipe p;
        pgs__pipe_begin(&p, &s->conn, deadline);
        pgs__pipe_add(&p, SQL_BEGIN, NULL);
        int q1 = pgs__pipe_add(&p, SQL_L1, &p1);
        int q2 = pgs__pipe_add(&p, SQL_L2, &p2);
        int q3 = k.ncmids ? pgs__pipe_add(&p, SQL_L3, &p3) : -1;
        int q4 = r->npair_keys ? pgs__pipe_add(&p, SQL_L4, &p4) : -1;
        int q5 = k.senders.n && k.users.n ? pgs__pipe_add(&p, SQL_L5, &p5) : -1;
        rc = pgs__pipe_run(&p);
        if (rc == IY_EUNAVAIL && lock_wait_timed_out(&s->conn) && lock_waits++ < LOCK_WAIT_RETRIES) {
            /* The server is there but our locks were busy for a whole
             * statement timeout (other nodes' rounds on the same hot rows):
             * nothing is acknowledged yet, so wait our turn again rather
             * than fail the round's sends. */
            pgs__pipe_end(&p);
            rc = pgs__rollback(&s->conn, pgs__deadline());
            if (rc) break;
            deadline = pgs__deadline();
            rc = IY_EUNAVAIL;
            continue;
        }
        if (rc == 0 && pair_appeared(pgs__pipe_res(&p, q1), pgs__pipe_res(&p, q4))) {
            /* Another node made one of our pairs' channels meanwhile: again,
             * so that its row is locked with the others (channels first). */
            pgs__pipe_end(&p);
            rc = pgs__rollback(&s->conn, deadline);
            if (rc) break;
            rc = IY_EUNAVAIL;
            raced = 1;
            continue;
        }
        if (rc == 0) {
            be->tx = 1;
            rc = view_fill(r, be, pgs__pipe_res(&p, q1), pgs__pipe_res(&p, q2),
                           q3 >= 0 ? pgs__pipe_res(&p, q3) : NULL, q5 >= 0 ? pgs__pipe_res(&p, q5) : NULL);
        }
        pgs__pipe_end(&p);
        break;
    }
    keys_free(&k);
    if (raced)
        iy_log_error("store: postgresql: a round's direct channels kept appearing on other nodes"
               " (%d loads); its sends answer unavailable", LOAD_ATTEMPTS);
    if (rc) {
        pgs__rollback(&s->conn, pgs__now() + 1000);
        be->tx = 0;
    }
    return rc == IY_ECONFLICT ? IY_EUNAVAIL : rc;
}

/* ---- targets (edits, deletes, reactions, replies) --------------------------------------- */

int pgs__target_locate(store *st, uint64_t id, uint64_t *channel)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, id);
    int rc = pgs__exec_row(&s->conn, SQL_T0, &pp, &res);
    if (rc) return rc == IY_ECONFLICT ? IY_EUNAVAIL : rc;
    *channel = pgs__r_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int pgs__attachments_load(store *st, store_round *r)
{
    pgs_store *s = (pgs_store *)st;
    pgs_round *be = r->be;
    if (!be || !be->tx) return IY_EIO;   /* round_load opened the transaction */
    pgs_arr ids;
    memset(&ids, 0, sizeof ids);
    pgs__arr_begin(&ids, PGS_OID_INT8);
    for (size_t i = 0; i < r->natts; i++) pgs__arr_i64(&ids, r->atts[i].id);
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_buf(&pp, pgs__arr_end(&ids));
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_A0, &pp, &res);
    pgs__arr_free(&ids);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        iy_attachment a = { 0 };
        a.id = pgs__r_i64(res, i, 0);
        a.uploader = pgs__r_i64(res, i, 1);
        a.channel = pgs__r_i64(res, i, 2);
        a.message = pgs__r_i64(res, i, 3);
        a.size = pgs__r_i64(res, i, 4);
        a.created_ms = (int64_t)pgs__r_i64(res, i, 5);
        a.thumb = pgs__r_bool(res, i, 6);
        if (pgs__r_str(res, i, 7, a.type, sizeof a.type) || pgs__r_str(res, i, 8, a.name, sizeof a.name)) {
            rc = IY_EIO;
            break;
        }
        for (size_t k = 0; k < r->natts; k++)
            if (r->atts[k].id == a.id) round_put_attachment(r, k, &a);
    }
    PQclear(res);
    return rc;
}

int pgs__targets_load(store *st, store_round *r)
{
    pgs_store *s = (pgs_store *)st;
    pgs_round *be = r->be;
    pgs_arr ch, id, ix;
    memset(&ch, 0, sizeof ch);
    memset(&id, 0, sizeof id);
    memset(&ix, 0, sizeof ix);
    pgs__arr_begin(&ch, PGS_OID_INT8);
    pgs__arr_begin(&id, PGS_OID_INT8);
    pgs__arr_begin(&ix, PGS_OID_INT8);
    for (size_t i = 0; i < r->ntargets; i++)
        if (r->targets[i].channel) {
            pgs__arr_i64(&ch, r->targets[i].channel);
            pgs__arr_i64(&id, r->targets[i].id);
            pgs__arr_i64(&ix, i);
        }
    int rc = 0;
    if (ch.n && (!be || !be->tx)) rc = IY_EIO;   /* located channels were not loaded: a bug */
    if (rc == 0 && ch.n) {
        pgs_params pp = { 0 };
        PGresult *res;
        pgs__p_buf(&pp, pgs__arr_end(&ch));
        pgs__p_buf(&pp, pgs__arr_end(&id));
        pgs__p_buf(&pp, pgs__arr_end(&ix));
        rc = pgs__exec(&s->conn, pgs__deadline(), SQL_T1, &pp, &res);
        for (int row = 0; rc == 0 && row < PQntuples(res); row++) {
            uint64_t i = pgs__r_i64(res, row, 0);
            iy_msg m;
            rc = pgs__msg_decode(res, row, 1, &m);
            if (rc == 0 && i < r->ntargets && m.id == r->targets[i].id) round_put_target(r, (size_t)i, &m);
            else iy_msg_clear(&m);
        }
        PQclear(res);   /* NULL when the statement failed */
    }
    pgs__arr_free(&ch);
    pgs__arr_free(&id);
    pgs__arr_free(&ix);
    return rc == IY_ECONFLICT ? IY_EUNAVAIL : rc;
}

/* ---- commit ----------------------------------------------------------------- */

/* (user, channel, value) triples, deduplicated per (user, channel). */
typedef struct triple {
    uint64_t user, channel, v;
} triple;

static int cmp_triple(const void *x, const void *y)
{
    const triple *a = x, *b = y;
    if (a->user != b->user) return a->user < b->user ? -1 : 1;
    if (a->channel != b->channel) return a->channel < b->channel ? -1 : 1;
    return a->v < b->v ? -1 : a->v > b->v;
}

/* Sorts t[0, n) and keeps the largest v of each (user, channel): the new n. */
static size_t dedupe(triple *t, size_t n)
{
    if (n == 0) return 0;
    qsort(t, n, sizeof *t, cmp_triple);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && t[m - 1].user == t[i].user && t[m - 1].channel == t[i].channel) t[m - 1] = t[i];
        else t[m++] = t[i];
    }
    return m;
}

/* The arrays of one commit. */
enum { A_C1_ID, A_C1_A, A_C1_B, A_C1_SEQ,
       A_C3_ID, A_C3_OWNER, A_C3_NAME, A_C3_SEQ, A_C3_MEMBERS, A_C3_OFF, A_C3_N,
       A_C4_ID, A_C4_SEQ, A_ADD_U, A_ADD_C, A_DEL_U, A_DEL_C,
       A_M_CH, A_M_SEQ, A_M_ID, A_M_FROM, A_M_SUBJ, A_M_EV, A_M_CMID, A_M_BODY, A_M_MENT,
       A_M_REPLY, A_M_REPLY_SEQ,
       A_I_U, A_I_POS, A_I_CH, A_I_SEQ, A_H_U, A_H_POS,
       A_K_U, A_K_CMID, A_K_CH, A_K_SEQ, A_K_ID, A_K_POS,
       A_R_U, A_R_CH, A_R_SEQ, A_P_U, A_P_CH, A_P_MSG, A_P_FROM, A_P_PREVIEW,
       A_T_CH, A_T_SEQ, A_T_ID, A_T_BODY, A_T_MENT, A_T_ED, A_T_DEL, A_T_REAC, A_T_ATT,
       A_M_ATT, A_A_ID, A_A_CH, A_A_MSG, A_COUNT };

static const uint32_t arr_oid[A_COUNT] = {
    [A_C3_NAME] = PGS_OID_TEXT, [A_C3_OFF] = PGS_OID_INT4, [A_C3_N] = PGS_OID_INT4,
    [A_M_EV] = PGS_OID_INT2, [A_M_CMID] = PGS_OID_TEXT, [A_M_BODY] = PGS_OID_BYTEA, [A_M_MENT] = PGS_OID_BYTEA,
    [A_K_CMID] = PGS_OID_TEXT, [A_P_PREVIEW] = PGS_OID_BYTEA,
    [A_T_BODY] = PGS_OID_BYTEA, [A_T_MENT] = PGS_OID_BYTEA, [A_T_DEL] = PGS_OID_BOOL,
    [A_T_REAC] = PGS_OID_BYTEA, [A_T_ATT] = PGS_OID_BYTEA, [A_M_ATT] = PGS_OID_BYTEA,
};

/* A message's attachments as stored ('' when none). */
static void arr_atts(pgs_arr *a, const iy_atts *atts)
{
    if (!atts || !atts->n) {
        pgs__arr_bytes(a, "", 0);
        return;
    }
    uint8_t *b = iy_malloc(IY_ATTS_ENC_MAX);
    pgs__arr_bytes(a, b, iy_atts_encode(atts, b));
    iy_free(b);
}

static void arr_i32(pgs_arr *a, uint32_t v)
{
    char b[4] = { (char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v };
    pgs__arr_bytes(a, b, 4);
}

/* A message's mentions as stored: 8 bytes big-endian each. */
static void arr_mentions(pgs_arr *a, const iy_msg *m)
{
    uint8_t ment[8 * IY_MENTIONS_MAX];
    for (uint32_t j = 0; j < m->nmentions; j++)
        for (int b = 0; b < 8; b++) ment[8 * j + (uint32_t)b] = (uint8_t)(m->mentions[j] >> (56 - 8 * b));
    pgs__arr_bytes(a, ment, 8 * (size_t)m->nmentions);
}

/* Members in x[0, nx) and not in y[0, ny) (both ascending) go to (u, c). */
static void members_minus(pgs_arr *u, pgs_arr *c, uint64_t channel, const uint64_t *x, uint32_t nx,
                          const uint64_t *y, uint32_t ny)
{
    for (uint32_t i = 0; i < nx; i++)
        if (rules_find(y, ny, x[i]) < 0) {
            pgs__arr_i64(u, x[i]);
            pgs__arr_i64(c, channel);
        }
}

/* Fills the channel arrays (C1..C6) from the view. */
static void build_channels(pgs_arr *a, const store_round *r, const pgs_round *be)
{
    for (size_t i = 0; i < r->nchans; i++) {
        const round_chan *c = &r->chans[i];
        if (c->created) {
            pgs__arr_i64(&a[A_C1_ID], c->ch.id);
            pgs__arr_i64(&a[A_C1_A], c->ch.members[0]);
            pgs__arr_i64(&a[A_C1_B], c->ch.members[1]);
            pgs__arr_i64(&a[A_C1_SEQ], c->seq);
            for (int j = 0; j < 2; j++) {
                pgs__arr_i64(&a[A_ADD_U], c->ch.members[j]);
                pgs__arr_i64(&a[A_ADD_C], c->ch.id);
            }
        } else if (c->changed && i < be->nloaded) {
            pgs__arr_i64(&a[A_C3_ID], c->ch.id);
            pgs__arr_i64(&a[A_C3_OWNER], c->ch.owner);
            pgs__arr_bytes(&a[A_C3_NAME], c->ch.name, strlen(c->ch.name));
            pgs__arr_i64(&a[A_C3_SEQ], c->seq);
            arr_i32(&a[A_C3_OFF], a[A_C3_MEMBERS].n);
            arr_i32(&a[A_C3_N], c->ch.nmembers);
            for (uint32_t j = 0; j < c->ch.nmembers; j++) pgs__arr_i64(&a[A_C3_MEMBERS], c->ch.members[j]);
            const uint64_t *orig = be->orig + be->orig_off[i];
            members_minus(&a[A_ADD_U], &a[A_ADD_C], c->ch.id, c->ch.members, c->ch.nmembers, orig,
                          be->orig_n[i]);
            members_minus(&a[A_DEL_U], &a[A_DEL_C], c->ch.id, orig, be->orig_n[i], c->ch.members,
                          c->ch.nmembers);
        } else if (c->seq != c->seq0) {
            pgs__arr_i64(&a[A_C4_ID], c->ch.id);
            pgs__arr_i64(&a[A_C4_SEQ], c->seq);
        }
    }
}

/* Fills the message, inbox, head, cmid, read and push arrays. */
static void build_messages(pgs_arr *a, const store_round *r)
{
    triple *reads = iy_malloc((r->nmsgs + 1) * sizeof *reads);
    triple *push = iy_malloc((r->npush + 1) * sizeof *push);
    size_t nreads = 0, npush = 0;
    for (size_t i = 0; i < r->nmsgs; i++) {
        const round_msg *m = &r->msgs[i];
        pgs__arr_i64(&a[A_M_CH], m->m.channel);
        pgs__arr_i64(&a[A_M_SEQ], m->m.seq);
        pgs__arr_i64(&a[A_M_ID], m->m.id);
        pgs__arr_i64(&a[A_M_FROM], m->m.from);
        pgs__arr_i64(&a[A_M_SUBJ], m->m.subject);
        pgs__arr_i16(&a[A_M_EV], (int16_t)m->m.event);
        pgs__arr_bytes(&a[A_M_CMID], m->m.cmid, strlen(m->m.cmid));
        pgs__arr_bytes(&a[A_M_BODY], m->text, m->text_len);
        arr_mentions(&a[A_M_MENT], &m->m);
        pgs__arr_i64(&a[A_M_REPLY], m->m.reply_to);
        pgs__arr_i64(&a[A_M_REPLY_SEQ], m->m.reply_seq);
        arr_atts(&a[A_M_ATT], m->m.atts);
        for (uint32_t j = 0; j < m->n; j++) {
            pgs__arr_i64(&a[A_I_U], m->members[j]);
            pgs__arr_i64(&a[A_I_POS], m->pos[j]);
            pgs__arr_i64(&a[A_I_CH], m->m.channel);
            pgs__arr_i64(&a[A_I_SEQ], m->m.seq);
        }
        if (m->m.cmid[0]) {
            pgs__arr_i64(&a[A_K_U], m->m.from);
            pgs__arr_bytes(&a[A_K_CMID], m->m.cmid, strlen(m->m.cmid));
            pgs__arr_i64(&a[A_K_CH], m->m.channel);
            pgs__arr_i64(&a[A_K_SEQ], m->m.seq);
            pgs__arr_i64(&a[A_K_ID], m->m.id);
            pgs__arr_i64(&a[A_K_POS], m->sender_pos);
        }
        if (m->sender_read) reads[nreads++] = (triple){ m->m.from, m->m.channel, m->m.seq };
    }
    for (size_t i = 0; i < r->nusers; i++)
        if (r->users[i].pos != r->users[i].pos0) {
            pgs__arr_i64(&a[A_H_U], r->users[i].id);
            pgs__arr_i64(&a[A_H_POS], r->users[i].pos);
        }
    nreads = dedupe(reads, nreads);
    for (size_t i = 0; i < nreads; i++) {
        pgs__arr_i64(&a[A_R_U], reads[i].user);
        pgs__arr_i64(&a[A_R_CH], reads[i].channel);
        pgs__arr_i64(&a[A_R_SEQ], reads[i].v);
    }
    /* A newer message of the round replaces an older one of the same
     * (user, channel): one note each, as collapsing would leave it. Sorted
     * by (user, channel), so one subscription's notes are upserted in
     * channel order, the order store_push_sub_delete locks them in. */
    for (size_t i = 0; i < r->npush; i++)
        if (r->push[i].msg < r->nmsgs)
            push[npush++] = (triple){ r->push[i].user, r->msgs[r->push[i].msg].m.channel, r->push[i].msg };
    npush = dedupe(push, npush);
    for (size_t i = 0; i < npush; i++) {
        const round_msg *m = &r->msgs[push[i].v];
        char preview[401];
        store_push_preview(preview, m->text, m->text_len, m->m.atts);
        pgs__arr_i64(&a[A_P_U], push[i].user);
        pgs__arr_i64(&a[A_P_CH], m->m.channel);
        pgs__arr_i64(&a[A_P_MSG], m->m.id);
        pgs__arr_i64(&a[A_P_FROM], m->m.from);
        pgs__arr_bytes(&a[A_P_PREVIEW], preview, strlen(preview));
    }
    iy_free(reads);
    iy_free(push);
}

/* Fills the target arrays (C13): every message the round changed, as it
 * is after the round (deleted: no text, no mentions, no reactions; its
 * reactions: '' when none). */
static void build_targets(pgs_arr *a, const store_round *r)
{
    for (size_t i = 0; i < r->ntargets; i++) {
        const round_target *t = &r->targets[i];
        if (!t->changed || !t->loaded) continue;
        char del = t->m.deleted ? 1 : 0;
        pgs__arr_i64(&a[A_T_CH], t->m.channel);
        pgs__arr_i64(&a[A_T_SEQ], t->m.seq);
        pgs__arr_i64(&a[A_T_ID], t->m.id);
        pgs__arr_bytes(&a[A_T_BODY], t->text, t->text ? t->text_len : 0);
        arr_mentions(&a[A_T_MENT], &t->m);
        pgs__arr_i64(&a[A_T_ED], (uint64_t)t->m.edited_ms);
        pgs__arr_bytes(&a[A_T_DEL], &del, 1);
        if (t->m.reactions) {
            uint8_t *reac = iy_malloc(iy_reactions_size(t->m.reactions));
            pgs__arr_bytes(&a[A_T_REAC], reac, iy_reactions_encode(t->m.reactions, reac));
            iy_free(reac);
        } else {
            pgs__arr_bytes(&a[A_T_REAC], "", 0);
        }
        arr_atts(&a[A_T_ATT], t->m.atts);
    }
    for (size_t i = 0; i < r->natts; i++) {
        if (!r->atts[i].changed) continue;
        pgs__arr_i64(&a[A_A_ID], r->atts[i].id);
        pgs__arr_i64(&a[A_A_CH], r->atts[i].a.channel);
        pgs__arr_i64(&a[A_A_MSG], r->atts[i].a.message);
    }
}

/* Queues sql with arrays a[first...] (count of them) if a[first] is not empty. */
static void add_arrays(pgs_pipe *p, const char *sql, pgs_arr *a, const int *which, int count)
{
    if (a[which[0]].n == 0) return;
    pgs_params pp = { 0 };
    for (int i = 0; i < count; i++) pgs__p_buf(&pp, &a[which[i]].b);
    pgs__pipe_add(p, sql, &pp);
}

int pgs__round_commit(store *st, store_round *r)
{
    pgs_store *s = (pgs_store *)st;
    pgs_round *be = r->be;
    if (!be || !be->tx) return IY_EIO;   /* messages without a load: a caller bug */
    pgs_arr *a = iy_calloc(A_COUNT, sizeof *a);
    for (int i = 0; i < A_COUNT; i++) pgs__arr_begin(&a[i], arr_oid[i] ? arr_oid[i] : PGS_OID_INT8);
    build_channels(a, r, be);
    build_messages(a, r);
    build_targets(a, r);
    for (int i = 0; i < A_COUNT; i++) pgs__arr_end(&a[i]);

    static const int c1[] = { A_C1_ID, A_C1_A, A_C1_B, A_C1_SEQ };
    static const int c3[] = { A_C3_ID, A_C3_OWNER, A_C3_NAME, A_C3_SEQ, A_C3_MEMBERS, A_C3_OFF, A_C3_N };
    static const int c4[] = { A_C4_ID, A_C4_SEQ };
    static const int c5[] = { A_ADD_U, A_ADD_C };
    static const int c6[] = { A_DEL_U, A_DEL_C };
    static const int c7[] = { A_M_CH, A_M_SEQ, A_M_ID, A_M_FROM, A_M_SUBJ, A_M_EV, A_M_CMID, A_M_BODY, A_M_MENT,
                              A_M_REPLY, A_M_REPLY_SEQ, A_M_ATT };
    static const int c8[] = { A_I_U, A_I_POS, A_I_CH, A_I_SEQ };
    static const int c9[] = { A_H_U, A_H_POS };
    static const int c10[] = { A_K_U, A_K_CMID, A_K_CH, A_K_SEQ, A_K_ID, A_K_POS };
    static const int c11[] = { A_R_U, A_R_CH, A_R_SEQ };
    static const int c13[] = { A_T_CH, A_T_SEQ, A_T_ID, A_T_BODY, A_T_MENT, A_T_ED, A_T_DEL, A_T_REAC, A_T_ATT };
    static const int c14[] = { A_A_ID, A_A_CH, A_A_MSG };
    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    add_arrays(&p, SQL_C1, a, c1, 4);
    add_arrays(&p, SQL_C2, a, c1, 3);
    add_arrays(&p, SQL_C3, a, c3, 7);
    add_arrays(&p, SQL_C4, a, c4, 2);
    add_arrays(&p, SQL_C5, a, c5, 2);
    add_arrays(&p, SQL_C6, a, c6, 2);
    add_arrays(&p, SQL_C7, a, c7, 12);
    add_arrays(&p, SQL_C8, a, c8, 4);
    add_arrays(&p, SQL_C9, a, c9, 2);
    add_arrays(&p, SQL_C10, a, c10, 6);
    add_arrays(&p, SQL_C11, a, c11, 3);
    if (a[A_P_U].n) {
        pgs_params pp = { 0 };
        pgs__p_buf(&pp, &a[A_P_U].b);
        pgs__p_buf(&pp, &a[A_P_CH].b);
        pgs__p_buf(&pp, &a[A_P_MSG].b);
        pgs__p_buf(&pp, &a[A_P_FROM].b);
        pgs__p_buf(&pp, &a[A_P_PREVIEW].b);
        pgs__p_i64(&pp, (uint64_t)pgs__wall_ms());
        pgs__pipe_add(&p, SQL_C12, &pp);
    }
    add_arrays(&p, SQL_C13, a, c13, 9);
    add_arrays(&p, SQL_C14, a, c14, 3);
    pgs__add_last_id(&p, s);
    int qc = pgs__pipe_add(&p, SQL_COMMIT, NULL);
    int rc = pgs__pipe_run(&p);
    PGresult *cr = pgs__pipe_res(&p, qc);
    if (rc && cr && PQresultStatus(cr) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(cr), "COMMIT") == 0)
        rc = 0;   /* COMMIT answered ok, then the connection went: it is committed */
    pgs__pipe_end(&p);
    for (int i = 0; i < A_COUNT; i++) pgs__arr_free(&a[i]);
    iy_free(a);
    if (rc == 0) {
        be->tx = 0;
        atomic_store(&s->committed_id, s->base.ids.last);
    } else if (rc == IY_ECONFLICT) iy_log_error("store: postgresql: a round's write hit a unique key (%s)", s->conn.sqlstate);
    return rc == IY_ECONFLICT ? IY_EUNAVAIL : rc;
}

void pgs__round_release(store *st, store_round *r)
{
    pgs_store *s = (pgs_store *)st;
    pgs_round *be = r->be;
    if (be && be->tx) pgs__rollback(&s->conn, pgs__now() + 1000);
    if (be) {
        iy_free(be->orig);
        iy_free(be->orig_off);
        iy_free(be->orig_n);
        iy_free(be);
    }
    r->be = NULL;
}
