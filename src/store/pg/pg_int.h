/* pg_int.h — internals of the PostgreSQL backend (store.h, store_int.h),
 * shared by its files. Not for anyone else.
 *
 *   pg_conn.c    one connection: connect and every exchange under a deadline,
 *                pipelines of prepared statements, errors, reconnect + backoff
 *   pg_wire.c    binary parameters (scalars, arrays) and result decoding
 *   pg_schema.c  the versioned schema and its migrations (costs: its header)
 *   pg.c         open / free / the ops table, node numbers, settings
 *   pg_users.c   users, sessions, channels (groups, membership index)
 *   pg_round.c   the commit round: load (lock + read) and commit (write)
 *   pg_read.c    history, sync, inbox heads, sessions, membership: shared by
 *                the store's connection and the readers' own connections
 *   pg_social.c  read state, friends, last_active
 *   pg_push.c    push subscriptions and the leased outbox
 *
 * Every exchange with the server is a pipeline (pgs__pipe_*): statements are
 * queued, one Sync ends them, and the results come back in one round trip.
 * Without an explicit BEGIN the statements between two Syncs are one
 * implicit transaction (all or nothing); a round opens an explicit one at
 * load and ends it at commit. Statements are prepared once per connection
 * (by the address of their SQL text, see pgs__pipe_add) and take and return
 * binary values only. */
#ifndef IY_STORE_PG_INT_H
#define IY_STORE_PG_INT_H
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include "../store_int.h"
#include "../../base/buf.h"
#include "../../base/u64map.h"

/* Time budgets (ms). A public call fails with IY_EUNAVAIL after at most
 * PGS_DEADLINE_MS (connecting included); the server ends a statement on its
 * own after PGS_STATEMENT_MS, so that a lock wait or a slow query normally
 * fails cleanly before the client gives up on the connection. */
#define PGS_DEADLINE_MS 4000
#define PGS_STATEMENT_MS 3000
#define PGS_IDLE_TX_MS 10000        /* a round left open by a stuck thread */
#define PGS_BACKOFF_MIN_MS 100      /* after a failed connect, doubling ... */
#define PGS_BACKOFF_MAX_MS 2000     /* ... up to this */
#define PGS_NODE_LEASE_S 60         /* a node number's lease (store_heartbeat renews) */

/* ---- one connection (pg_conn.c) ---------------------------------------- */

typedef struct pgs_conn {
    const char *uri;            /* the libpq URI (not owned) */
    const char *appname;        /* application_name: "iyagi:NODE" (not owned) */
    const char *what;           /* "storage thread" or "reader", for log lines */
    PGconn *c;                  /* NULL: not connected */
    int64_t retry_at;           /* monotonic ms: no connect attempt before this */
    int backoff;                /* ms to wait after the next failed connect */
    int down;                   /* a failure was logged; the next success logs recovery */
    u64map prepared;            /* SQL text address -> statement number (this connection) */
    uint64_t nprepared;
    char sqlstate[6];           /* of the last failed statement, "" if none */
} pgs_conn;

/* Monotonic milliseconds. */
int64_t pgs__now(void);

/* Wall-clock milliseconds since the Unix epoch. */
int64_t pgs__wall_ms(void);

/* The deadline of a call that starts now. */
static inline int64_t pgs__deadline(void) { return pgs__now() + PGS_DEADLINE_MS; }

/* Sets up a connection record (not connected: the first exchange connects). */
void pgs__conn_init(pgs_conn *pc, const char *uri, const char *appname, const char *what);

/* Connects now if not connected: 0, IY_EUNAVAIL (logged once per outage). */
int pgs__conn_ensure(pgs_conn *pc, int64_t deadline);

/* Closes the connection (a later exchange reconnects). Accepts closed. */
void pgs__conn_close(pgs_conn *pc);

/* 1 if a transaction block is open on the connection (idle in it or failed). */
int pgs__conn_in_tx(const pgs_conn *pc);

/* ---- parameters and values (pg_wire.c) --------------------------------- */

#define PGS_PARAMS_MAX 12

/* Binary parameters of one statement. Values are copied by libpq when the
 * statement is queued, so borrowed pointers need only live until then. */
typedef struct pgs_params {
    int n;
    const char *v[PGS_PARAMS_MAX];
    int len[PGS_PARAMS_MAX];
    int fmt[PGS_PARAMS_MAX];
    char num[PGS_PARAMS_MAX][8];
} pgs_params;

void pgs__p_i64(pgs_params *p, uint64_t v);            /* int8 (ids travel as their bits) */
void pgs__p_i32(pgs_params *p, int32_t v);             /* int4 */
void pgs__p_i16(pgs_params *p, int16_t v);             /* int2 */
void pgs__p_bool(pgs_params *p, int v);                /* bool */
void pgs__p_bytes(pgs_params *p, const void *b, size_t n);   /* text or bytea, borrowed */
void pgs__p_str(pgs_params *p, const char *s);         /* text, NUL-terminated, borrowed */
void pgs__p_buf(pgs_params *p, const iy_buf *b);       /* a built array, borrowed */

/* A one-dimensional binary array parameter, built element by element. */
typedef struct pgs_arr {
    iy_buf b;
    uint32_t n;
    uint32_t oid;
} pgs_arr;

enum { PGS_OID_BOOL = 16, PGS_OID_BYTEA = 17, PGS_OID_INT8 = 20, PGS_OID_INT2 = 21,
       PGS_OID_INT4 = 23, PGS_OID_TEXT = 25 };

void pgs__arr_begin(pgs_arr *a, uint32_t oid);         /* empties a (keeps its memory) */
void pgs__arr_i64(pgs_arr *a, uint64_t v);
void pgs__arr_i16(pgs_arr *a, int16_t v);
void pgs__arr_bytes(pgs_arr *a, const void *b, size_t n);
const iy_buf *pgs__arr_end(pgs_arr *a);                /* the finished value */
void pgs__arr_free(pgs_arr *a);

/* Binary result values (NULL reads as 0 / empty). */
uint64_t pgs__r_i64(const PGresult *r, int row, int col);
int32_t pgs__r_i32(const PGresult *r, int row, int col);
int16_t pgs__r_i16(const PGresult *r, int row, int col);
int pgs__r_bool(const PGresult *r, int row, int col);
int pgs__r_null(const PGresult *r, int row, int col);
const char *pgs__r_bytes(const PGresult *r, int row, int col, size_t *n);
/* Copies a text value into dst[cap] (NUL-terminated): 0, IY_EIO if longer. */
int pgs__r_str(const PGresult *r, int row, int col, char *dst, size_t cap);
/* An int8[] value into out[max]: 0 with *n, IY_EIO if malformed or longer. */
int pgs__r_arr_i64(const PGresult *r, int row, int col, uint64_t *out, uint32_t max, uint32_t *n);

/* ---- pipelines (pg_conn.c) ----------------------------------------------- */

#define PGS_PIPE_MAX 48             /* statements (and prepares) in one pipeline */

typedef struct pgs_pipe {
    pgs_conn *pc;
    int64_t deadline;
    int err;                    /* first failure while queueing */
    int nitems;                 /* queued: statements and prepares */
    int nq;                     /* statements */
    int item_q[PGS_PIPE_MAX];   /* item -> statement number, or -1 for a prepare */
    const char *item_sql[PGS_PIPE_MAX];   /* prepares: the SQL text (its cache key) */
    int item_ok[PGS_PIPE_MAX];
    PGresult *res[PGS_PIPE_MAX];          /* statement -> its result (after run) */
} pgs_pipe;

/* Starts a pipeline on pc, connecting if needed: 0, IY_EUNAVAIL. */
int pgs__pipe_begin(pgs_pipe *p, pgs_conn *pc, int64_t deadline);

/* Queues a statement (prepared on this connection at first use; sql must
 * be a string with static storage: its address names it). Returns the
 * statement's number for pgs__pipe_res (a failure shows at run). */
int pgs__pipe_add(pgs_pipe *p, const char *sql, const pgs_params *params);

/* Queues a one-off statement (not prepared; schema changes). */
int pgs__pipe_add_once(pgs_pipe *p, const char *sql);

/* Sends everything with one Sync and reads every result under the
 * deadline. Returns 0 if every statement succeeded; else the first
 * failure: IY_EUNAVAIL (connection lost, deadline passed: the connection
 * is closed; or a transient server condition), IY_ECONFLICT (a unique
 * violation: pc->sqlstate "23505"), IY_EIO (anything else, logged). */
int pgs__pipe_run(pgs_pipe *p);

/* Statement q's result (NULL if it did not run). */
PGresult *pgs__pipe_res(pgs_pipe *p, int q);

/* Rows of statement q's result (0 if it did not run). */
int pgs__pipe_rows(pgs_pipe *p, int q);

/* Frees the results. Accepts a pipe never begun (zeroed). */
void pgs__pipe_end(pgs_pipe *p);

/* Runs one statement as its own exchange (an implicit transaction):
 * begin, add, run. On success *res holds the result (PQclear it) if res is
 * not NULL. Errors as pgs__pipe_run. */
int pgs__exec(pgs_conn *pc, int64_t deadline, const char *sql, const pgs_params *params,
              PGresult **res);

/* pgs__exec of a lookup that answers one row: IY_ENOTFOUND (nothing in *res)
 * when it answers none (or, a broken invariant, several). */
int pgs__exec_row(pgs_conn *pc, const char *sql, const pgs_params *params, PGresult **res);

/* Rolls back an open transaction block, if any: 0, or IY_EUNAVAIL after
 * closing a connection that could not do it. */
int pgs__rollback(pgs_conn *pc, int64_t deadline);

/* ---- the store (pg.c) ------------------------------------------------------ */

typedef struct pgs_store {
    store_base base;            /* first: store.c dispatches through it */
    pgs_conn conn;              /* the storage thread's connection */
    char *uri;
    char *node_name;
    char appname[96];
    int claimed;                /* holds a node number (released by free) */
    /* Every message id of this node number up to here is committed or was
     * never stored (set after each committed round; the search indexer
     * reads it from its thread). */
    _Atomic uint64_t committed_id;
} pgs_store;

/* IY_EINVAL (logged) if a round is open on s: a write outside rounds must
 * not run inside the round's transaction; else 0. what names the call. */
int pgs__no_round(pgs_store *s, const char *what);

/* The SQL that records this node's newest id (queued in writes that use ids). */
void pgs__add_last_id(pgs_pipe *p, pgs_store *s);

/* Committed reads on any connection (pg_read.c): the storage thread's or a
 * reader's. As store_user_get / store_session_get (pwhash may be NULL). */
int pgs__q_user(pgs_conn *pc, uint64_t id, iy_user *out, char *pwhash);
int pgs__q_session(pgs_conn *pc, const uint8_t h[32], uint64_t *user, char device[IY_DEVICE_MAX + 1]);
/* The columns pgs__msg_decode reads, in its order (messages AS m). */
#define PGS_MSG_COLS \
    "m.channel_id, m.seq, m.id, m.from_id, m.subject, m.event, m.cmid, m.body, m.mentions," \
    " m.edited_ms, m.deleted, m.reply_to, m.reply_seq, m.reactions, m.attachments"
/* Decodes message row `row` of r (columns from col: PGS_MSG_COLS) into m
 * (text and reactions malloc'd: iy_msg_clear it either way): 0, IY_EIO. */
int pgs__msg_decode(const PGresult *r, int row, int col, iy_msg *m);

/* Creates or upgrades the schema (pg_schema.c) before deadline: 0,
 * IY_EUNAVAIL, IY_EIO (a newer schema than this binary knows, a database
 * not in UTF8, a server older than 14: logged). */
int pgs__schema_init(pgs_conn *pc, int64_t deadline);

/* The ops of each concept, for the table in pg.c: as their store_* calls. */
int pgs__user_create(store *s, const char *username, const char *display_name, const char *pwhash,
                     iy_user *out);
int pgs__user_get(store *s, uint64_t id, iy_user *out);
int pgs__user_find(store *s, const char *username, iy_user *out, char pwhash[256]);
int pgs__user_set_display_name(store *s, uint64_t id, const char *display_name);
int pgs__user_set_password(store *s, uint64_t id, const char *pwhash);
int pgs__user_delete(store *s, uint64_t id);
int pgs__session_list(store *s, uint64_t user, iy_session_info **out, size_t *n);
int pgs__session_create(store *s, const uint8_t h[32], uint64_t user, const char *device);
int pgs__session_get(store *s, const uint8_t h[32], uint64_t *user, char device[IY_DEVICE_MAX + 1]);
int pgs__session_delete(store *s, const uint8_t h[32]);
int pgs__channel_get(store *s, uint64_t id, iy_channel *out);
int pgs__group_create(store *s, uint64_t owner, const char *name, const uint64_t *members,
                      uint32_t n, iy_channel *out);
int pgs__user_channels(store *s, uint64_t user, uint64_t **out, size_t *n);
int pgs__channel_last(store *s, uint64_t channel, iy_msg *out);
int pgs__share_channel(store *s, uint64_t a, uint64_t b);
int pgs__round_load(store *s, store_round *r);
int pgs__round_commit(store *s, store_round *r);
void pgs__round_release(store *s, store_round *r);
int pgs__target_locate(store *s, uint64_t id, uint64_t *channel);
int pgs__targets_load(store *s, store_round *r);
int pgs__attachments_load(store *s, store_round *r);
int pgs__user_pos(store *s, uint64_t user, uint64_t *pos);
int pgs__history(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq, int limit,
                 iy_msg_list *out);
int pgs__sync(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more);
int pgs__read_set(store *s, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now);
int pgs__read_get(store *s, uint64_t user, uint64_t channel, uint64_t *seq);
int pgs__friend_state(store *s, uint64_t a, uint64_t b, int *state);
int pgs__block_set(store *s, uint64_t blocker, uint64_t blocked, int on);
int pgs__mute_set(store *s, uint64_t user, uint64_t channel, int on);
int pgs__names_load(store *s, store_round *r);
int pgs__muted(store *s, uint64_t user, uint64_t channel);
int pgs__blocked(store *s, uint64_t blocker, uint64_t blocked);
int pgs__block_list(store *s, uint64_t blocker, uint64_t **ids, size_t *n);
int pgs__friend_set(store *s, uint64_t a, uint64_t b, int expect_a, int state_a);
int pgs__friend_list(store *s, uint64_t user, uint64_t **f, size_t *nf, uint64_t **in, size_t *ni,
                     uint64_t **out, size_t *no);
int pgs__last_active_set(store *s, uint64_t user, int64_t ms);
int pgs__last_active_set_many(store *s, const uint64_t *users, const int64_t *ms, size_t n);
int pgs__friends_of(store *s, const uint64_t *users, size_t n, uint64_t **pairs, size_t *np);
int pgs__last_active_get(store *s, uint64_t user, int64_t *ms);
int pgs__push_sub_create(store *s, iy_push_sub *sub);
int pgs__push_sub_delete(store *s, uint64_t user, uint64_t id);
int pgs__push_sub_get(store *s, uint64_t id, iy_push_sub *out);
int pgs__push_take(store *s, int64_t now_ms, int64_t lease_ms, int all, size_t max,
                   iy_push_note **out, size_t *n);
int pgs__push_done(store *s, const iy_push_note *note, int done, int dead, int64_t retry_ms);
int pgs__push_counts(store *s, uint64_t *pending, uint64_t *dead);
store_reader *pgs__reader_new(store *s);
void pgs__reader_free(store_reader *r);
int pgs__reader_history(store_reader *r, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                        int limit, iy_msg_list *out);
int pgs__reader_sync(store_reader *r, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                     int *more);
int pgs__reader_user_pos(store_reader *r, uint64_t user, uint64_t *pos);
int pgs__reader_session(store_reader *r, const uint8_t h[32], uint64_t *user,
                        char device[IY_DEVICE_MAX + 1]);
int pgs__reader_user_get(store_reader *r, uint64_t id, iy_user *out);
int pgs__reader_is_member(store_reader *r, uint64_t channel, uint64_t user);
int pgs__reader_user_channels(store_reader *r, uint64_t user, uint64_t **out, size_t *n);
int pgs__reader_search(store_reader *r, const uint64_t *channels, size_t n, const char *q, size_t qlen,
                       uint64_t before, int limit, store_hit **out, size_t *nout);
/* The channels of user on any connection (pg_users.c). */
int pgs__q_user_channels(pgs_conn *pc, uint64_t user, uint64_t **out, size_t *n);
/* pg_media.c: attachments' records. */
int pgs__attachment_put(store *s, const iy_attachment *a);
int pgs__q_attachment(pgs_conn *pc, uint64_t id, iy_attachment *out);
int pgs__reader_attachment(store_reader *r, uint64_t id, iy_attachment *out);
/* pg_search.c: the indexer, and a search on a reader's connection. */
store_indexer *pgs__indexer_new(store *s);
int pgs__search(pgs_conn *pc, const uint64_t *channels, size_t n, const char *q, size_t qlen,
                uint64_t before, int limit, store_hit **out, size_t *nout);

#endif
