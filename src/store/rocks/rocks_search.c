/* rocks_search.c — the RocksDB backend's search index: SQLite FTS5 with the
 * trigram tokenizer in DIR/search.sqlite (store.h, "search").
 *
 * Why SQLite FTS5: it is a well-kept full-text engine in Debian (libsqlite3,
 * 3.40), embeddable beside RocksDB like the store itself, and its trigram
 * tokenizer indexes substrings of any script: Korean is written without
 * spaces between many words, so word tokenizers miss "안녕" in "안녕하세요"
 * while trigrams find it. Queries of 3 code points or more use the index;
 * 2-code-point queries (no trigram in them) scan the
 * texts newest first (a common pair is found at once; a rare one costs a
 * scan of the caller's channels). Both give candidates newest first.
 *
 *   docs   id INTEGER PRIMARY KEY (the message id), channel, seq, text;
 *          index (channel, id)
 *   fts    fts5(text), external content = docs (kept in step by the
 *          indexer's statements), trigram tokenizer, case-insensitive
 *   cursor node PK, last_id: the newest message id indexed
 *
 * The indexer (its own thread) reads the 'i' records RocksDB wrote after
 * the cursor, whole records at a time, and the messages they list, under
 * the store's dblock (read); then writes docs, fts and the cursor in ONE
 * SQLite transaction, with a few statements for the whole batch (WAL,
 * synchronous=NORMAL: a machine crash may lose the newest transactions,
 * and with them the cursor's move, so they are done again). Edits re-read the target's current text; deletes drop its row.
 * Deleting search.sqlite rebuilds the index from the messages at the next
 * start. */
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "../../base/alloc.h"
#include "../../base/buf.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include "../../base/utf8.h"
#include "rocks_enc.h"
#include "rocks_int.h"

#define BATCH_MAX 2000           /* messages one step reads (whole 'i' records) */
#define BATCH_BYTES (1u << 20)   /* and text: a lagging indexer catches up in small steps */
/* What a step may take of the disk for each byte of text it indexes: the
 * docs row, its trigrams in FTS5 (several times the text for text that
 * does not repeat) and the WAL copy of both before a checkpoint. */
#define DISK_PER_TEXT_BYTE 12

static const char *const SCHEMA[] = {
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "CREATE TABLE IF NOT EXISTS docs (id INTEGER PRIMARY KEY, channel INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, text TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS docs_channel ON docs (channel, id)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(text, content = 'docs',"
    " content_rowid = 'id', tokenize = 'trigram')",
    /* fts was kept by triggers on docs once: a statement per message */
    "DROP TRIGGER IF EXISTS docs_ai",
    "DROP TRIGGER IF EXISTS docs_ad",
    "CREATE TABLE IF NOT EXISTS cursor (node INTEGER PRIMARY KEY, last_id INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO cursor VALUES (0, 0)",
    NULL
};

/* The indexer's own connection: a batch is staged in a temporary table,
 * then applied by APPLY for all of it at once. FTS5 flushes its pending
 * terms into a new segment at the end of every statement after a write to
 * it (its savepoint), so a statement per message (as triggers on docs
 * did) wrote a segment per message, and merged them later: a third of the
 * server's CPU in the chat shape (docs/BENCHMARKS.md). */
static const char *const STAGE[] = {
    "PRAGMA temp_store = MEMORY",
    "CREATE TEMP TABLE IF NOT EXISTS batch (id INTEGER PRIMARY KEY, channel INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, text TEXT)",   /* text NULL: drop the doc */
    NULL
};

enum { APPLY_N = 5 };
static const char *const APPLY[APPLY_N] = {
    /* what was indexed of these ids before (an edit, a delete, a batch
     * done again after a crash) leaves fts with the text it was indexed with */
    "INSERT INTO fts (fts, rowid, text) SELECT 'delete', d.id, d.text FROM temp.batch b"
    " CROSS JOIN docs d ON d.id = b.id",
    "DELETE FROM docs WHERE id IN (SELECT id FROM temp.batch)",
    "INSERT INTO docs (id, channel, seq, text) SELECT id, channel, seq, text FROM temp.batch"
    " WHERE text IS NOT NULL",
    "INSERT INTO fts (rowid, text) SELECT id, text FROM temp.batch WHERE text IS NOT NULL",
    "DELETE FROM temp.batch",
};

static int sq_err(sqlite3 *db, const char *what)
{
    iy_log_error("store: search index: %s: %s", what, db ? sqlite3_errmsg(db) : "cannot open");
    return IY_EIO;
}

static char *index_path(const char *dir)
{
    size_t n = strlen(dir) + 32;
    char *p = iy_malloc(n);
    snprintf(p, n, "%s/search.sqlite", dir);
    return p;
}

static sqlite3 *sq_open(const char *dir, int readonly)
{
    char *path = index_path(dir);
    sqlite3 *db = NULL;
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        sq_err(db, path);
        sqlite3_close(db);
        db = NULL;
    } else {
        sqlite3_busy_timeout(db, 2000);
    }
    iy_free(path);
    return db;
}

void rocks_search_close(sqlite3 *db)
{
    sqlite3_close(db);
}

/* ---- the indexer ---------------------------------------------------------- */

typedef struct rocks_indexer {
    store_indexer_base base;
    rocks *s;
    rview v;                    /* own read options: the scan of 'i' records; db set under dblock */
    rview lv;                   /* ... and the lookups made during that scan (a view runs one
                                   scan at a time: its bounds live in its read options) */
    int behind;                 /* the last batch stopped at a limit: a backlog (read_batch) */
    sqlite3 *db;
    sqlite3_stmt *stage, *cur;
    sqlite3_stmt *apply[APPLY_N];
} rocks_indexer;

/* One message the step looked at: a text to index, or a change of one. */
typedef struct item {
    uint64_t id, channel, seq;
    int del;                    /* drop doc `id` */
    char *text;                 /* else: (re)index with this text (NULL: nothing) */
    size_t text_len;
} item;

static void ix_free(store_indexer *sx)
{
    rocks_indexer *x = (rocks_indexer *)sx;
    sqlite3_finalize(x->stage);
    sqlite3_finalize(x->cur);
    for (int i = 0; i < APPLY_N; i++) sqlite3_finalize(x->apply[i]);
    sqlite3_close(x->db);
    rocksdb_readoptions_destroy(x->v.ropt);
    rocksdb_readoptions_destroy(x->v.ropt_scan);
    rocksdb_readoptions_destroy(x->lv.ropt);
    rocksdb_readoptions_destroy(x->lv.ropt_scan);
    iy_free(x);
}

/* The item of a plain message or of the change an event makes, read now
 * (so a message edited since is indexed with its current text). */
static int read_item(const rview *rv, uint64_t id, uint64_t channel, uint64_t seq, item *it)
{
    iy_msg m;
    int rc = rocks_msg_get(rv, channel, seq, &m);
    if (rc) return rc;
    memset(it, 0, sizeof *it);
    if (m.event == IY_EV_EDITED || m.event == IY_EV_DELETED) {
        uint64_t tid = m.subject, tch, tseq;
        iy_msg_clear(&m);
        rc = rocks_msg_locate(rv, tid, &tch, &tseq);
        if (rc == IY_ENOTFOUND) return 0;
        if (rc == 0) rc = rocks_msg_get(rv, tch, tseq, &m);
        if (rc) return rc;
        id = tid;
        channel = tch;
        seq = tseq;
    }
    it->id = id;
    it->channel = channel;
    it->seq = seq;
    if (m.event != IY_EV_NONE || m.deleted || m.text_len == 0) {
        it->del = 1;
    } else {
        it->text = m.text;
        it->text_len = m.text_len;
        m.text = NULL;
    }
    iy_msg_clear(&m);
    return 0;
}

/* Up to BATCH_MAX items (or BATCH_BYTES of text) after the cursor, whole
 * 'i' records: 0, IY_EIO. *last gets the newest id read (the next cursor),
 * *bytes the text read; base.full says whether more is waiting. */
static int read_batch(rocks_indexer *x, item **out, size_t *n, uint64_t *last, size_t *bytes)
{
    rocks *s = x->s;
    size_t cap = 0;
    *bytes = 0;
    *out = NULL;
    *n = 0;
    *last = x->base.cursor;
    /* Keeping up, it reads the newest messages, which pages read too:
     * cached. Catching up on a backlog (the last batch stopped at a limit),
     * each is read once and no one else wants it: not cached (a 1M-message
     * store's backlog filled 40 MB of the block cache in 4 s). */
    rocksdb_readoptions_set_fill_cache(x->lv.ropt, !x->behind);
    pthread_rwlock_rdlock(&s->dblock);
    x->v.db = x->lv.db = s->db;
    uint8_t lo[9], hi[1] = { K_MSGID + 1 };
    rocksdb_iterator_t *it = rocks_scan_open(&x->v, lo, key1(lo, K_MSGID, x->base.cursor + 1), hi, 1);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 9);
         rc == 0 && rocksdb_iter_valid(it) && *n < BATCH_MAX && *bytes < BATCH_BYTES; rocksdb_iter_next(it)) {
        size_t kl, vl;
        rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != 9 || vl == 0 || vl % 24) {
            rc = rocks_corrupt("message index");
            break;
        }
        for (size_t i = 0; i < vl / 24 && rc == 0 && !atomic_load(&x->base.cancel); i++) {
            uint64_t id = get64(v + 24 * i);
            if (id <= x->base.cursor) continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 64;
                *out = iy_realloc(*out, cap * sizeof **out);
            }
            rc = read_item(&x->lv, id, get64(v + 24 * i + 8), get64(v + 24 * i + 16), &(*out)[*n]);
            if (rc == 0) *bytes += (*out)[(*n)++].text_len;
            if (id > *last) *last = id;
        }
    }
    x->base.full = rc == 0 && rocksdb_iter_valid(it);   /* stopped at a limit */
    int rc2 = rocks_scan_close(it);
    pthread_rwlock_unlock(&s->dblock);
    return rc ? rc : rc2;
}

static int sq_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : sq_err(db, sql);
}

static int sq_step_done(sqlite3 *db, sqlite3_stmt *st)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (r == SQLITE_INTERRUPT) return IY_EUNAVAIL;   /* a stop (ix_interrupt): done again at the next start */
    return r == SQLITE_DONE || r == SQLITE_ROW ? 0 : sq_err(db, "write");
}

static int write_batch(rocks_indexer *x, const item *items, size_t n, uint64_t last)
{
    if (sq_exec(x->db, "BEGIN")) return IY_EIO;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const item *it = &items[i];
        if (atomic_load(&x->base.cancel)) {
            rc = IY_EUNAVAIL;
            break;
        }
        sqlite3_bind_int64(x->stage, 1, (sqlite3_int64)it->id);
        sqlite3_bind_int64(x->stage, 2, (sqlite3_int64)it->channel);
        sqlite3_bind_int64(x->stage, 3, (sqlite3_int64)it->seq);
        if (!it->del && it->text) sqlite3_bind_text(x->stage, 4, it->text, (int)it->text_len, SQLITE_STATIC);
        rc = sq_step_done(x->db, x->stage);   /* text left unbound: NULL */
    }
    for (int i = 0; i < APPLY_N && rc == 0; i++)
        rc = atomic_load(&x->base.cancel) ? IY_EUNAVAIL : sq_step_done(x->db, x->apply[i]);
    if (rc == 0) {
        sqlite3_bind_int64(x->cur, 1, (sqlite3_int64)last);
        rc = sq_step_done(x->db, x->cur);
    }
    if (rc == 0 && sq_exec(x->db, "COMMIT") == 0) {
        x->base.cursor = last;
        return 0;
    }
    sqlite3_exec(x->db, "ROLLBACK", NULL, NULL, NULL);   /* temp.batch's rows too */
    return rc == IY_EUNAVAIL ? rc : IY_EIO;
}

/* Any thread (store_indexer_cancel): the batch's statements are few and
 * big, so a stop interrupts the one running (SQLite allows it from another
 * thread while the connection is open; it is closed only after the join). */
static void ix_interrupt(store_indexer *sx)
{
    sqlite3_interrupt(((rocks_indexer *)sx)->db);
}

static int ix_step(store_indexer *sx, size_t *done)
{
    rocks_indexer *x = (rocks_indexer *)sx;
    item *items;
    size_t n;
    uint64_t last;
    size_t bytes;
    *done = 0;
    x->base.full = 0;
    /* The index is derived data: while the store refuses writes for the
     * disk's reserve, it waits too, and it writes a batch only while the
     * disk has room for it above the reserve (a lagging indexer would
     * otherwise eat the reserve the refusals keep); it catches up when
     * space returns. */
    if (atomic_load(&x->s->fault) == ROCKS_LOW_SPACE) return 0;
    int rc = read_batch(x, &items, &n, &last, &bytes);
    if (rc == 0 && atomic_load(&x->base.cancel)) rc = IY_EUNAVAIL;   /* a batch read in part */
    int room = rc == 0 && rocks_room_for(x->s, (uint64_t)bytes * DISK_PER_TEXT_BYTE + (1u << 20));
    if (room && last != x->base.cursor) rc = write_batch(x, items, n, last);
    if (room && rc == 0) *done = n;
    else x->base.full = 0;
    x->behind = x->base.full;
    for (size_t i = 0; i < n; i++) iy_free(items[i].text);
    iy_free(items);
    return rc;
}

store_indexer *rocks_indexer_new(store *st)
{
    rocks *s = (rocks *)st;
    sqlite3 *db = sq_open(s->dir, 0);
    if (!db) return NULL;
    for (const char *const *sql = SCHEMA; *sql; sql++)
        if (sq_exec(db, *sql)) {
            sqlite3_close(db);
            return NULL;
        }
    for (const char *const *sql = STAGE; *sql; sql++)
        if (sq_exec(db, *sql)) {
            sqlite3_close(db);
            return NULL;
        }
    rocks_indexer *x = iy_calloc(1, sizeof *x);
    x->base.free = ix_free;
    x->base.step = ix_step;
    x->base.interrupt = ix_interrupt;
    x->s = s;
    x->db = db;
    x->v.ropt = rocksdb_readoptions_create();
    x->v.ropt_scan = rocksdb_readoptions_create();
    x->lv.ropt = rocksdb_readoptions_create();
    x->lv.ropt_scan = rocksdb_readoptions_create();
    /* The index records are read once: their blocks would only push out
     * the ones sends and pages reuse. The messages: see read_batch. */
    rocksdb_readoptions_set_fill_cache(x->v.ropt, 0);
    rocksdb_readoptions_set_fill_cache(x->v.ropt_scan, 0);
    sqlite3_stmt *get = NULL;
    int bad = 0;
    for (int i = 0; i < APPLY_N && !bad; i++)
        bad = sqlite3_prepare_v2(db, APPLY[i], -1, &x->apply[i], NULL) != SQLITE_OK;
    if (bad ||
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO temp.batch (id, channel, seq, text) VALUES (?, ?, ?, ?)",
                           -1, &x->stage, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE cursor SET last_id = ? WHERE node = 0", -1, &x->cur, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT last_id FROM cursor WHERE node = 0", -1, &get, NULL) != SQLITE_OK ||
        sqlite3_step(get) != SQLITE_ROW) {
        sq_err(db, "prepare");
        sqlite3_finalize(get);
        ix_free((store_indexer *)x);
        return NULL;
    }
    x->base.cursor = (uint64_t)sqlite3_column_int64(get, 0);
    sqlite3_finalize(get);
    return (store_indexer *)x;
}

/* ---- queries (reader threads) ---------------------------------------------- */

/* q as an FTS5 phrase: in double quotes, each inner quote doubled. */
static void fts_phrase(iy_buf *b, const char *q, size_t qlen)
{
    iy_buf_putc(b, '"');
    for (size_t i = 0; i < qlen; i++) {
        if (q[i] == '"') iy_buf_putc(b, '"');
        iy_buf_putc(b, q[i]);
    }
    iy_buf_putc(b, '"');
}

/* q as a LIKE pattern (ESCAPE '\'): %q% with %, _ and \ escaped. */
static void like_pattern(iy_buf *b, const char *q, size_t qlen)
{
    iy_buf_putc(b, '%');
    for (size_t i = 0; i < qlen; i++) {
        if (q[i] == '%' || q[i] == '_' || q[i] == '\\') iy_buf_putc(b, '\\');
        iy_buf_putc(b, q[i]);
    }
    iy_buf_putc(b, '%');
}

/* Newest first, so the scan stops at the limit: fts drives (CROSS JOIN
 * keeps it the outer loop) and yields rowids in descending order itself.
 * Ranking bm25 over every match cost seconds for a word in a tenth of a
 * million messages (docs/BENCHMARKS.md); the API ranks the candidates. */
static const char SQL_MATCH[] =
    "SELECT d.id, d.channel, d.seq FROM fts CROSS JOIN docs d ON d.id = fts.rowid"
    " WHERE fts MATCH ?1 AND fts.rowid < ?3 AND d.channel IN (SELECT value FROM json_each(?2))"
    " ORDER BY fts.rowid DESC LIMIT ?4";
static const char SQL_LIKE[] =
    "SELECT id, channel, seq FROM docs"
    " WHERE channel IN (SELECT value FROM json_each(?2)) AND text LIKE ?1 ESCAPE '\\' AND id < ?3"
    " ORDER BY id DESC LIMIT ?4";

int rocks_search_v(const char *dir, sqlite3 **dbp, const uint64_t *channels, size_t n, const char *q,
                   size_t qlen, uint64_t before, int limit, store_hit **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (n == 0 || limit <= 0) return 0;
    if (!*dbp && !(*dbp = sq_open(dir, 1))) return IY_EUNAVAIL;
    sqlite3 *db = *dbp;
    int trigram = iy_utf8_count(q, qlen) >= 3;
    iy_buf pat = { 0 }, list = { 0 };
    if (trigram) fts_phrase(&pat, q, qlen);
    else like_pattern(&pat, q, qlen);
    iy_buf_putc(&list, '[');
    for (size_t i = 0; i < n; i++) {
        char num[24];
        int l = snprintf(num, sizeof num, "%s%llu", i ? "," : "", (unsigned long long)channels[i]);
        iy_buf_append(&list, num, (size_t)l);
    }
    iy_buf_putc(&list, ']');
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, trigram ? SQL_MATCH : SQL_LIKE, -1, &st, NULL) != SQLITE_OK) {
        rc = sq_err(db, "search");
        goto out;
    }
    sqlite3_bind_text(st, 1, pat.data, (int)pat.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, list.data, (int)list.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, before && before <= INT64_MAX ? (sqlite3_int64)before : INT64_MAX);
    sqlite3_bind_int(st, 4, limit);
    *out = iy_malloc((size_t)limit * sizeof **out);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        store_hit *h = &(*out)[(*nout)++];
        h->id = (uint64_t)sqlite3_column_int64(st, 0);
        h->channel = (uint64_t)sqlite3_column_int64(st, 1);
        h->seq = (uint64_t)sqlite3_column_int64(st, 2);
    }
    if (r != SQLITE_DONE) rc = sq_err(db, "search");
out:
    sqlite3_finalize(st);
    iy_buf_free(&pat);
    iy_buf_free(&list);
    if (rc || *nout == 0) {
        iy_free(*out);
        *out = NULL;
        *nout = 0;
    }
    return rc;
}
