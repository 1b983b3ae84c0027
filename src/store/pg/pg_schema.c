/* pg_schema.c — the PostgreSQL backend's versioned schema (pg_int.h).
 *
 * schema_version holds one row per applied migration. At open, under a
 * transaction-scoped advisory lock (so that nodes starting together migrate
 * once), the newest version is read: older ones are brought up to
 * PGS_SCHEMA_VERSION by running the missing migrations in order, in the
 * same transaction; a newer one makes the node refuse to start (IY_EIO and
 * one log line naming both versions): an older binary must not write a
 * schema it does not know. A migration is a list of statements and is
 * never edited once released: a change is a new migration.
 *
 * Tables (version 1). Ids are int8 holding the uint64 ids' bits (positive
 * until 2093: 41 bits of milliseconds since 2024).
 *
 *   users          id PK, username UNIQUE (C collation), display_name, pwhash
 *   inbox_heads    user_id PK, pos: the newest inbox pos; exists iff the user
 *                  does; the row a round locks per recipient (FOR UPDATE)
 *   sessions       token_hash bytea PK (SHA-256 of the token), user_id, device;
 *                  created_ms and an index on user_id (version 3)
 *   channels       id PK, kind, owner, name, members int8[] (ascending), seq:
 *                  the newest seq; the row a round locks per channel
 *   directs        (a, b) PK, a < b -> channel_id: the pair's direct channel
 *   channel_members (user_id, channel_id) PK: the user -> channels index
 *   messages       (channel_id, seq) PK, id, from_id, subject, event, cmid,
 *                  body bytea; PARTITION BY HASH (channel_id), 16 partitions
 *   inbox          (user_id, pos) PK, channel_id, seq: a reference to the
 *                  message, never its text; PARTITION BY HASH (user_id)
 *   cmids          (user_id, cmid) PK, channel_id, seq, msg_id, sender_pos:
 *                  idempotency, enforced by the key; PARTITION BY HASH (user_id)
 *   reads          (user_id, channel_id) PK, seq
 *   friends        (a, b) PK, state (a's side; both rows change together)
 *   presence       user_id PK, last_active_ms
 *   push_subs      id PK, user_id (indexed), device, kind, url, keys;
 *                  session (version 2): the token hash of the session that
 *                  made it (NULL: made before version 2)
 *   push_notes     (sub_id, channel_id) PK, due_ms (indexed), lease_node, ...
 *   push_dead      (sub_id, channel_id, message_id) PK: dead letters
 *   blocks         (blocker, blocked) PK (version 3)
 *   channels.muted the members who muted it (version 3): the round reads
 *                  it with the row it locks anyway
 *   messages.edited_ms, .deleted (version 4): a plain message's state after
 *                  edits and deletes (the EDITED/DELETED events are rows of
 *                  their own); .reply_to, .reply_seq (version 4): the id and
 *                  seq of the message of its channel a plain message replies
 *                  to (0: none); .reactions (version 4): a plain message's
 *                  reactions, iy_reactions_encode ('': none; the
 *                  REACTED/UNREACTED events are rows of their own);
 *                  messages_id, an index on id, finds a message by id
 *                  (edit, reaction and reply targets; a partitioned
 *                  index: one probe per partition)
 *   search_docs    id PK, channel_id, seq, text (version 5): the search
 *                  index's documents, written by each node's indexer
 *                  (pg_search.c), a pg_trgm GIN index on text
 *   search_cursors node PK, last_id (version 5): each node number's indexer
 *   attachments    id PK, uploader, channel_id, message_id (0 until sent),
 *                  size, created_ms, thumb, type, name (version 6): uploads;
 *                  their bytes are blobs in the blob directory;
 *                  messages.attachments (version 7): what a message shows of
 *                  the uploads it carries (iy_atts_encode, '' when none)
 *   settings       name PK, value bytea
 *   nodes          num PK (0..1023), name UNIQUE, lease_until, last_id
 *
 * Sharding. Every large table is keyed first by the column a sharded
 * PostgreSQL (Citus) would distribute it by: channel_id for messages
 * (channels co-located with it), user_id for inbox, inbox_heads, cmids,
 * reads, channel_members. The queries name those columns in every lookup,
 * so distributing the tables is configuration, not code (the commit round
 * then spans shards: Citus runs it as one distributed transaction).
 *
 * What each query costs as history grows (N messages in all, spread over
 * 16 partitions; B-tree depth d = log_fanout(N/16), fanout ~200-300 for
 * int8 keys: d = 4 up to ~10^9-10^10 rows per partition, the top levels
 * always cached):
 *
 *   history page (L messages)   one index descent into one partition's
 *                               (channel_id, seq) B-tree (d pages), then L
 *                               index entries (a leaf page holds ~200) and
 *                               L heap tuples: rows of one channel are
 *                               written together by rounds, so ~L/20 heap
 *                               pages for short texts. Independent of N
 *                               except through d.
 *   sync page (L entries)       one descent into inbox (user_id, pos), L
 *                               index entries + heap tuples (~L/50 pages,
 *                               a user's entries arrive together), then L
 *                               PK probes into messages: L * d index pages
 *                               (upper levels cached: ~L leaf + L heap
 *                               pages cold). The costliest read: a sync
 *                               of 100 is ~200-300 page touches.
 *   send (round)                per message: one messages insert (1 heap +
 *                               d index pages, the rightmost leaf of a
 *                               channel's key range: hot), per recipient one
 *                               inbox insert (same shape) and its head
 *                               update (HOT, in place); per sender a cmid
 *                               insert (random leaf in a large index: the
 *                               one write whose cost grows with N, ~1 cold
 *                               page per message until the index fits in
 *                               memory). Channel and head rows are few and
 *                               hot; their locks are taken by index probes.
 *   user_pos, is_member, read   one PK probe each (d pages, cached).
 *   edit / delete / react /     locating the target by id: one probe of
 *   reply                       messages_id in each of the 16 partitions
 *                               (the channel is not known yet); loading and
 *                               (edit, delete, react) rewriting it: one
 *                               probe of its partition.
 *   push take                   the due index (push_notes is small: rows
 *                               live until delivered).
 *   user_channels               one range scan of channel_members(user_id).
 * Nothing scans a table: every statement is an index probe or a short
 * range of one index, so costs grow with log N, and the working set is the
 * recent tail of each index plus the hot heads.
 *
 * Rows updated in place all the time (inbox_heads, channels, reads,
 * presence, nodes) never change an indexed column and leave free space in
 * their pages (fillfactor), so their updates are HOT: no index writes. */
#include "pg_int.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include <stdio.h>
#include <string.h>

#define PGS_SCHEMA_VERSION 7

static const char *const M1[] = {
    "CREATE TABLE settings (name text COLLATE \"C\" PRIMARY KEY, value bytea NOT NULL)",
    "CREATE TABLE nodes (num int4 PRIMARY KEY CHECK (num BETWEEN 0 AND 1023),"
    " name text COLLATE \"C\" NOT NULL UNIQUE, lease_until timestamptz NOT NULL,"
    " last_id int8 NOT NULL DEFAULT 0)",
    "CREATE TABLE users (id int8 PRIMARY KEY, username text COLLATE \"C\" NOT NULL UNIQUE,"
    " display_name text NOT NULL, pwhash text NOT NULL)",
    "CREATE TABLE inbox_heads (user_id int8 PRIMARY KEY, pos int8 NOT NULL) WITH (fillfactor = 50)",
    "CREATE TABLE sessions (token_hash bytea PRIMARY KEY, user_id int8 NOT NULL, device text NOT NULL)",
    "CREATE TABLE channels (id int8 PRIMARY KEY, kind int2 NOT NULL, owner int8 NOT NULL,"
    " seq int8 NOT NULL, name text NOT NULL, members int8[] NOT NULL) WITH (fillfactor = 70)",
    "CREATE TABLE directs (a int8, b int8, channel_id int8 NOT NULL, PRIMARY KEY (a, b))",
    "CREATE TABLE channel_members (user_id int8, channel_id int8, PRIMARY KEY (user_id, channel_id))",
    "CREATE TABLE messages (channel_id int8, seq int8, id int8 NOT NULL, from_id int8 NOT NULL,"
    " subject int8 NOT NULL, event int2 NOT NULL, cmid text COLLATE \"C\" NOT NULL,"
    " body bytea NOT NULL, PRIMARY KEY (channel_id, seq)) PARTITION BY HASH (channel_id)",
    "CREATE TABLE inbox (user_id int8, pos int8, channel_id int8 NOT NULL, seq int8 NOT NULL,"
    " PRIMARY KEY (user_id, pos)) PARTITION BY HASH (user_id)",
    "CREATE TABLE cmids (user_id int8, cmid text COLLATE \"C\", channel_id int8 NOT NULL,"
    " seq int8 NOT NULL, msg_id int8 NOT NULL, sender_pos int8 NOT NULL,"
    " PRIMARY KEY (user_id, cmid)) PARTITION BY HASH (user_id)",
    "DO $$ BEGIN FOR i IN 0..15 LOOP"
    " EXECUTE format('CREATE TABLE messages_%s PARTITION OF messages"
    " FOR VALUES WITH (MODULUS 16, REMAINDER %s)', i, i);"
    " EXECUTE format('CREATE TABLE inbox_%s PARTITION OF inbox"
    " FOR VALUES WITH (MODULUS 16, REMAINDER %s)', i, i);"
    " EXECUTE format('CREATE TABLE cmids_%s PARTITION OF cmids"
    " FOR VALUES WITH (MODULUS 16, REMAINDER %s)', i, i);"
    " END LOOP; END $$",
    "CREATE TABLE reads (user_id int8, channel_id int8, seq int8 NOT NULL,"
    " PRIMARY KEY (user_id, channel_id)) WITH (fillfactor = 80)",
    "CREATE TABLE friends (a int8, b int8, state int2 NOT NULL, PRIMARY KEY (a, b))",
    "CREATE TABLE presence (user_id int8 PRIMARY KEY, last_active_ms int8 NOT NULL)"
    " WITH (fillfactor = 80)",
    "CREATE TABLE push_subs (id int8 PRIMARY KEY, user_id int8 NOT NULL, kind int2 NOT NULL,"
    " device text NOT NULL, url text NOT NULL, p256dh text NOT NULL, auth text NOT NULL,"
    " secret text NOT NULL)",
    "CREATE INDEX push_subs_user ON push_subs (user_id)",
    "CREATE TABLE push_notes (sub_id int8, channel_id int8, user_id int8 NOT NULL,"
    " message_id int8 NOT NULL, from_id int8 NOT NULL, created_ms int8 NOT NULL,"
    " due_ms int8 NOT NULL, attempts int4 NOT NULL, lease_node int4,"
    " preview bytea NOT NULL, PRIMARY KEY (sub_id, channel_id))",
    "CREATE INDEX push_notes_due ON push_notes (due_ms)",
    "CREATE TABLE push_dead (sub_id int8, channel_id int8, message_id int8, user_id int8 NOT NULL,"
    " from_id int8 NOT NULL, created_ms int8 NOT NULL, died_ms int8 NOT NULL,"
    " attempts int4 NOT NULL, preview bytea NOT NULL, PRIMARY KEY (sub_id, channel_id, message_id))",
    NULL
};

/* Version 2: a push subscription belongs to the session that made it and
 * ends with it (store_session_delete). */
static const char *const M2[] = {
    "ALTER TABLE push_subs ADD COLUMN session bytea",
    NULL
};

/* Version 3: blocks (store_block_set), one row per (blocker, blocked);
 * sessions get their date and an index by user (store_session_list). */
static const char *const M3[] = {
    "CREATE TABLE blocks (blocker int8, blocked int8, PRIMARY KEY (blocker, blocked))",
    "ALTER TABLE sessions ADD COLUMN created_ms int8 NOT NULL DEFAULT 0",
    "CREATE INDEX sessions_by_user ON sessions (user_id)",
    "ALTER TABLE channels ADD COLUMN muted int8[] NOT NULL DEFAULT '{}'",
    "ALTER TABLE messages ADD COLUMN mentions bytea NOT NULL DEFAULT ''",
    NULL
};

/* Version 4: messages can be edited and deleted (IY_EV_EDITED, _DELETED):
 * the changed message's state, and the index that finds a message by id
 * (store_round_begin locates a target by id alone); a plain message may
 * reply to an earlier one of its channel (its id and seq; 0: none) and
 * carry reactions (IY_EV_REACTED, _UNREACTED). The index is built
 * without the statement timeout; a large existing table should get it
 * beforehand (docs/DEPLOY.md: CREATE INDEX CONCURRENTLY), since the open
 * still gives up after its deadline. */
static const char *const M4[] = {
    "ALTER TABLE messages ADD COLUMN edited_ms int8 NOT NULL DEFAULT 0,"
    " ADD COLUMN deleted bool NOT NULL DEFAULT false,"
    " ADD COLUMN reply_to int8 NOT NULL DEFAULT 0, ADD COLUMN reply_seq int8 NOT NULL DEFAULT 0,"
    " ADD COLUMN reactions bytea NOT NULL DEFAULT ''",
    "SET LOCAL statement_timeout = 0",
    "CREATE INDEX IF NOT EXISTS messages_id ON messages (id)",
    NULL
};

/* Version 5: search (pg_search.c). pg_trgm is a trusted extension (a
 * database owner may create it); where it cannot be created the migration
 * goes on without the trigram index, and searches scan (logged at open). */
static const char *const M5[] = {
    "DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS pg_trgm; EXCEPTION WHEN OTHERS THEN"
    " RAISE WARNING 'iyagi: the extension pg_trgm could not be created: search will scan'; END $$",
    "CREATE TABLE search_docs (id int8 PRIMARY KEY, channel_id int8 NOT NULL, seq int8 NOT NULL,"
    " text text NOT NULL)",
    "CREATE INDEX search_docs_channel ON search_docs (channel_id, id)",
    "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN"
    " EXECUTE 'CREATE INDEX search_docs_trgm ON search_docs USING gin (text gin_trgm_ops)'; END IF; END $$",
    "CREATE TABLE search_cursors (node int4 PRIMARY KEY, last_id int8 NOT NULL)",
    NULL
};

/* Version 6: attachments (pg_media.c): an upload's record; its bytes are
 * a blob in the blob directory. */
static const char *const M6[] = {
    "CREATE TABLE attachments (id int8 PRIMARY KEY, uploader int8 NOT NULL, channel_id int8 NOT NULL,"
    " message_id int8 NOT NULL, size int8 NOT NULL, created_ms int8 NOT NULL, thumb bool NOT NULL,"
    " type text NOT NULL, name text NOT NULL)",
    NULL
};

/* Version 7: a message's attachments (iy_atts_encode; '' when none). */
static const char *const M7[] = {
    "ALTER TABLE messages ADD COLUMN attachments bytea NOT NULL DEFAULT ''",
    NULL
};

static const char *const *const migrations[PGS_SCHEMA_VERSION] = { M1, M2, M3, M4, M5, M6, M7 };

static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
/* 0x6979616769 = "iyagi": the lock that serializes migrations. */
static const char SQL_LOCK[] = "SELECT pg_advisory_xact_lock(452646151529)";
static const char SQL_VERSION_TABLE[] =
    "CREATE TABLE IF NOT EXISTS schema_version (version int4 PRIMARY KEY,"
    " applied_at timestamptz NOT NULL DEFAULT now())";
static const char SQL_VERSION[] = "SELECT coalesce(max(version), 0)::int4 FROM schema_version";
static const char SQL_VERSION_ADD[] = "INSERT INTO schema_version (version) VALUES ($1::int4)";

int pgs__schema_init(pgs_conn *pc, int64_t deadline)
{
    pgs_pipe p;
    int rc = pgs__pipe_begin(&p, pc, deadline);
    if (rc) return rc;
    int server = PQserverVersion(pc->c);
    if (server < 140000) {
        pgs__pipe_end(&p);
        iy_log_error("store: postgresql %d.%d is too old: version 14 or newer is needed", server / 10000,
               server % 10000);
        return IY_EIO;
    }
    const char *enc = PQparameterStatus(pc->c, "server_encoding");
    if (!enc || (strcmp(enc, "UTF8") != 0 && strcmp(enc, "SQL_ASCII") != 0)) {
        pgs__pipe_end(&p);
        iy_log_error("store: the database's encoding is %s: UTF8 is needed", enc ? enc : "unknown");
        return IY_EIO;
    }
    pgs__pipe_add_once(&p, SQL_BEGIN);
    pgs__pipe_add_once(&p, SQL_LOCK);
    pgs__pipe_add_once(&p, SQL_VERSION_TABLE);
    int qv = pgs__pipe_add_once(&p, SQL_VERSION);
    rc = pgs__pipe_run(&p);
    int version = rc == 0 && pgs__pipe_rows(&p, qv) == 1 ? pgs__r_i32(pgs__pipe_res(&p, qv), 0, 0) : 0;
    pgs__pipe_end(&p);
    if (rc) goto err;
    if (version > PGS_SCHEMA_VERSION) {
        iy_log_error("store: the database's schema version %d is newer than this binary's (%d):"
               " refusing to start", version, PGS_SCHEMA_VERSION);
        rc = IY_EIO;
        goto err;
    }

    /* The missing migrations, in order, and the commit: one exchange.
     * (Creating version 1 takes ~0.1 s; a migration that needs longer than
     * the statement timeout must raise it for itself with SET LOCAL.) */
    pgs__pipe_begin(&p, pc, deadline);
    for (int v = version; v < PGS_SCHEMA_VERSION; v++) {
        for (const char *const *sql = migrations[v]; *sql; sql++) pgs__pipe_add_once(&p, *sql);
        pgs_params pp = { 0 };
        pgs__p_i32(&pp, v + 1);
        pgs__pipe_add(&p, SQL_VERSION_ADD, &pp);
    }
    pgs__pipe_add_once(&p, SQL_COMMIT);
    rc = pgs__pipe_run(&p);
    pgs__pipe_end(&p);
    if (rc) goto err;
    if (version < PGS_SCHEMA_VERSION)
        iy_log_info("store: postgresql schema %s version %d", version ? "upgraded to" : "created at",
               PGS_SCHEMA_VERSION);
    return 0;
err:
    pgs__rollback(pc, pgs__now() + 1000);
    return rc;
}
