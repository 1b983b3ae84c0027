/* pg_conn.c — one PostgreSQL connection of the backend: connecting, and
 * every exchange with the server under a deadline (pg_int.h).
 *
 * A connection is used by one thread at a time (the storage thread's, or
 * one reader's). Its life:
 *
 *             connect ok (backoff reset)
 *   CLOSED -----------------------------------> OPEN
 *    |  ^                                        |
 *    |  +---- lost, deadline passed, failover ---+  (the next call
 *    |                                              reconnects at once)
 *    +-- connect fails --> CLOSED until retry_at = now + backoff
 *                          (100 ms, doubling to 2 s)
 *
 * - Connecting is asynchronous (PQconnectStartParams + PQconnectPoll +
 *   poll) under the call's deadline. A multi-host URI is libpq's business:
 *   a refused or unreachable host, or one that is not read-write under
 *   target_session_attrs=read-write, makes libpq try the next one within
 *   the same connect. tcp_user_timeout (2 s) also bounds a host whose SYN
 *   goes unanswered (Linux applies it to SYN retransmissions), so a
 *   blackholed primary still leaves time for the next host; a host that
 *   accepts and then never answers is bounded only by the call's deadline
 *   (libpq's connect_timeout works in blocking connects only), and that
 *   call fails. TCP keepalives notice a dead peer of an idle connection.
 *   Our parameters come before the URI, so the URI may override them.
 *   Host names are resolved inside PQconnectPoll (getaddrinfo blocks).
 * - Every exchange is a pipeline (pipeline mode is entered once per
 *   connection, the socket is non-blocking): statements are queued, one
 *   Sync ends them, output is flushed and results read with poll() until
 *   the deadline. A deadline that passes closes the connection instead of
 *   cancelling: PQcancel (libpq 15) connects synchronously and would itself
 *   hang on a dead server. The server ends the orphaned statement on its
 *   own: statement_timeout, client_connection_check_interval and
 *   idle_in_transaction_session_timeout are set on every connection.
 * - Calls made while closed and before retry_at fail at once with
 *   IY_EUNAVAIL: a dead server costs nothing per call. One log line when
 *   the database becomes unreachable, one when it is back.
 * - Prepared statements are per connection: the map `prepared` (SQL text
 *   address -> statement number) is emptied when the connection closes. A
 *   Prepare is queued in the same pipeline as its first use and counted
 *   only once its result came back ok. */
#include "pg_int.h"
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include "../../base/metrics.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t pg_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t pgs__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pgs__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pgs__conn_init(pgs_conn *pc, const char *uri, const char *appname, const char *what)
{
    memset(pc, 0, sizeof *pc);
    pc->uri = uri;
    pc->appname = appname;
    pc->what = what;
    pc->backoff = PGS_BACKOFF_MIN_MS;
}

void pgs__conn_close(pgs_conn *pc)
{
    if (pc->c) PQfinish(pc->c);   /* sends Terminate without blocking: the socket is non-blocking */
    pc->c = NULL;
    u64map_free(&pc->prepared);
    pc->nprepared = 0;
}

int pgs__conn_in_tx(const pgs_conn *pc)
{
    if (!pc->c) return 0;
    PGTransactionStatusType t = PQtransactionStatus(pc->c);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}

/* libpq's message on one line (it ends with a newline, and a multi-host
 * failure has one line per host). */
static void one_line(char *dst, size_t cap, const char *msg)
{
    size_t n = 0;
    for (const char *p = msg ? msg : ""; *p && n + 2 < cap; p++) {
        if (*p == '\n') {
            if (p[1] == '\0') break;
            dst[n++] = ';';
            dst[n++] = ' ';
        } else if (*p != '\r' && *p != '\t') {
            dst[n++] = *p;
        }
    }
    dst[n] = '\0';
}

/* Waits until fd is ready for `events` or the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - pgs__now();
        if (left <= 0) return 0;
        struct pollfd pfd = { fd, events, 0 };
        int n = poll(&pfd, 1, (int)left);
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* A failed connect: closes, logs once per outage, backs off. IY_EUNAVAIL. */
static int connect_failed(pgs_conn *pc, const char *why)
{
    metrics_add(M_PG_ERRORS, 1);
    char line[512];
    one_line(line, sizeof line, why);
    pgs__conn_close(pc);
    if (!pc->down) iy_log_warn("store: postgresql unreachable (%s): %s", pc->what, line);
    pc->down = 1;
    pc->retry_at = pgs__now() + pc->backoff;
    pc->backoff = pc->backoff * 2 > PGS_BACKOFF_MAX_MS ? PGS_BACKOFF_MAX_MS : pc->backoff * 2;
    return IY_EUNAVAIL;
}

/* An established connection failed: closes, logs once per outage; the next
 * call reconnects at once. IY_EUNAVAIL. */
static int conn_lost(pgs_conn *pc, const char *why)
{
    metrics_add(M_PG_ERRORS, 1);
    char line[512];
    one_line(line, sizeof line, why);
    pgs__conn_close(pc);
    if (!pc->down) iy_log_warn("store: postgresql connection lost (%s): %s", pc->what, line);
    pc->down = 1;
    pc->retry_at = pgs__now();
    return IY_EUNAVAIL;
}

/* Server notices and warnings go to the log, one line each (the setup
 * below asks for warnings and worse only). */
static void notice_log(void *arg, const char *msg)
{
    pgs_conn *pc = arg;
    char line[512];
    one_line(line, sizeof line, msg);
    iy_log_warn("store: postgresql (%s) says: %s", pc->what, line);
}

/* The asynchronous connect, until ok or the deadline. 0 or IY_EUNAVAIL. */
static int connect_async(pgs_conn *pc, int64_t deadline)
{
    static const char *const keys[] = {
        "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "client_encoding", "application_name",
        "dbname", NULL };
    const char *vals[] = { "3", "1", "5", "2", "2", "2000", "UTF8", pc->appname, pc->uri, NULL };
    pc->c = PQconnectStartParams(keys, vals, 1);
    if (!pc->c) return connect_failed(pc, "out of memory");
    if (PQstatus(pc->c) == CONNECTION_BAD) return connect_failed(pc, PQerrorMessage(pc->c));
    PQsetNoticeProcessor(pc->c, notice_log, pc);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) return connect_failed(pc, PQerrorMessage(pc->c));
        int w = wait_fd(PQsocket(pc->c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (w == 0) return connect_failed(pc, "connecting timed out");
        if (w < 0) return connect_failed(pc, strerror(errno));
        st = PQconnectPoll(pc->c);
    }
    if (PQsetnonblocking(pc->c, 1) != 0 || PQenterPipelineMode(pc->c) != 1)
        return connect_failed(pc, PQerrorMessage(pc->c));
    return 0;
}

/* The session settings of every connection (one exchange). */
static const char SQL_SETUP[] =
    "SELECT set_config('statement_timeout', $1::text, false),"
    " set_config('idle_in_transaction_session_timeout', $2::text, false),"
    " set_config('client_connection_check_interval', '1000', false),"
    " set_config('client_min_messages', 'warning', false),"
    " set_config('synchronous_commit', 'on', false)";

static int pipe_start(pgs_pipe *p, pgs_conn *pc, int64_t deadline)
{
    memset(p, 0, sizeof *p);
    p->pc = pc;
    p->deadline = deadline;
    pc->sqlstate[0] = '\0';
    return 0;
}

/* 1 if an open, idle connection is known dead without a round trip: the
 * server closed it meanwhile (a restart sends a FATAL and closes; a backend
 * whose postmaster died exits), so bytes or the EOF wait on the socket. An
 * idle connection expects nothing, so anything readable means it is gone
 * (at worst a stray notice costs one reconnect). */
static int idle_dead(pgs_conn *pc)
{
    if (pgs__conn_in_tx(pc)) return 0;   /* a round in progress: its own calls find out */
    struct pollfd pfd = { .fd = PQsocket(pc->c), .events = POLLIN };
    if (pfd.fd < 0) return 1;
    return poll(&pfd, 1, 0) > 0;
}

int pgs__conn_ensure(pgs_conn *pc, int64_t deadline)
{
    if (pc->c && idle_dead(pc)) {
        /* Reconnect at once instead of failing this call on a corpse. */
        pgs__conn_close(pc);
        pc->retry_at = 0;
    }
    if (pc->c) {
        metrics_observe_pg_wait_ns(0);
        return 0;
    }
    if (pgs__now() < pc->retry_at) return IY_EUNAVAIL;
    /* A connection to make: the caller waits for it (each thread has its
     * own connection, so this is the whole of a pool wait). */
    uint64_t t0 = pg_mono_ns();
    int rc = connect_async(pc, deadline);
    if (rc) return rc;

    char a[16], b[16];
    pgs_params pp = { 0 };
    snprintf(a, sizeof a, "%d", PGS_STATEMENT_MS);
    snprintf(b, sizeof b, "%d", PGS_IDLE_TX_MS);
    pgs__p_str(&pp, a);
    pgs__p_str(&pp, b);
    pgs_pipe p;
    pipe_start(&p, pc, deadline);
    pgs__pipe_add(&p, SQL_SETUP, &pp);
    rc = pgs__pipe_run(&p);
    pgs__pipe_end(&p);
    if (rc) return pc->c ? connect_failed(pc, "session setup failed") : rc;
    metrics_observe_pg_wait_ns(pg_mono_ns() - t0);
    if (pc->down) iy_log_info("store: postgresql reachable again (%s)", pc->what);
    pc->down = 0;
    pc->backoff = PGS_BACKOFF_MIN_MS;
    return 0;
}

/* ---- pipelines ------------------------------------------------------------ */

int pgs__pipe_begin(pgs_pipe *p, pgs_conn *pc, int64_t deadline)
{
    pipe_start(p, pc, deadline);
    p->err = pgs__conn_ensure(pc, deadline);
    return p->err;
}

/* Queueing failed: the pipeline's state is unknown, so the connection goes. */
static void queue_failed(pgs_pipe *p)
{
    p->err = conn_lost(p->pc, PQerrorMessage(p->pc->c));
}

int pgs__pipe_add(pgs_pipe *p, const char *sql, const pgs_params *pp)
{
    int q = p->nq++;
    if (p->err) return q;
    pgs_conn *pc = p->pc;
    if (p->nitems + 2 > PGS_PIPE_MAX) {
        iy_log_error("store: postgresql: more than %d statements in one pipeline", PGS_PIPE_MAX);
        p->err = IY_EIO;
        pgs__conn_close(pc);
        return q;
    }
    char name[32];
    uint64_t *num = u64map_find(&pc->prepared, (uint64_t)(uintptr_t)sql);
    if (num) {
        snprintf(name, sizeof name, "iy%llu", (unsigned long long)*num);
    } else {
        uint64_t n = ++pc->nprepared;
        u64map_set(&pc->prepared, (uint64_t)(uintptr_t)sql, n);
        snprintf(name, sizeof name, "iy%llu", (unsigned long long)n);
        if (!PQsendPrepare(pc->c, name, sql, 0, NULL)) {
            queue_failed(p);
            return q;
        }
        p->item_q[p->nitems] = -1;
        p->item_sql[p->nitems++] = sql;
    }
    if (!PQsendQueryPrepared(pc->c, name, pp ? pp->n : 0, pp ? pp->v : NULL, pp ? pp->len : NULL,
                             pp ? pp->fmt : NULL, 1)) {
        queue_failed(p);
        return q;
    }
    p->item_q[p->nitems++] = q;
    return q;
}

int pgs__pipe_add_once(pgs_pipe *p, const char *sql)
{
    int q = p->nq++;
    if (p->err) return q;
    if (p->nitems + 1 > PGS_PIPE_MAX) {
        iy_log_error("store: postgresql: more than %d statements in one pipeline", PGS_PIPE_MAX);
        p->err = IY_EIO;
        pgs__conn_close(p->pc);
        return q;
    }
    if (!PQsendQueryParams(p->pc->c, sql, 0, NULL, NULL, NULL, NULL, 1)) {
        queue_failed(p);
        return q;
    }
    p->item_q[p->nitems++] = q;
    return q;
}

/* Flushes output and reads input until a result can be taken without
 * blocking: 0, or IY_EUNAVAIL after closing the connection. */
static int wait_ready(pgs_conn *pc, int64_t deadline)
{
    for (;;) {
        int fl = PQflush(pc->c);
        if (fl < 0) return conn_lost(pc, PQerrorMessage(pc->c));
        if (!PQisBusy(pc->c)) return 0;
        int w = wait_fd(PQsocket(pc->c), (short)(POLLIN | (fl ? POLLOUT : 0)), deadline);
        if (w == 0) return conn_lost(pc, "no answer before the deadline");
        if (w < 0) return conn_lost(pc, strerror(errno));
        if (!PQconsumeInput(pc->c)) return conn_lost(pc, PQerrorMessage(pc->c));
    }
}

/* What a server error means for the caller (see pgs__pipe_run). */
static int classify(pgs_conn *pc, const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    char msg[512];
    one_line(msg, sizeof msg, PQresultErrorMessage(res));
    snprintf(pc->sqlstate, sizeof pc->sqlstate, "%s", st ? st : "");
    if (PQstatus(pc->c) == CONNECTION_BAD || !st) return conn_lost(pc, msg);
    if (strcmp(st, "23505") == 0) return IY_ECONFLICT;            /* unique_violation */
    /* The server going away, or this one no longer being the primary
     * (after a failover): another connection may find a better one. */
    if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0 || strcmp(st, "25006") == 0)
        return conn_lost(pc, msg);
    /* Transient: resources, lock and statement timeouts, serialization and
     * deadlock, a commit of unknown outcome. The client retries. */
    if (strncmp(st, "53", 2) == 0 || strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 ||
        strcmp(st, "40003") == 0 || strcmp(st, "57014") == 0 || strcmp(st, "55P03") == 0 ||
        strcmp(st, "25P03") == 0) {
        iy_log_warn("store: postgresql (%s): %s", pc->what, msg);
        metrics_add(M_PG_ERRORS, 1);
        return IY_EUNAVAIL;
    }
    metrics_add(M_PG_ERRORS, 1);
    iy_log_error("store: postgresql error %s (%s): %s", st, pc->what, msg);
    return IY_EIO;
}

static int pipe_run(pgs_pipe *p);

/* One round trip, timed (iyagi_pg_query_seconds). */
int pgs__pipe_run(pgs_pipe *p)
{
    if (p->err || p->nitems == 0) return pipe_run(p);
    uint64_t t0 = pg_mono_ns();
    int rc = pipe_run(p);
    metrics_observe_pg_query_ns(pg_mono_ns() - t0);
    return rc;
}

static int pipe_run(pgs_pipe *p)
{
    pgs_conn *pc = p->pc;
    int rc = p->err;
    if (rc) return rc;
    if (p->nitems == 0) return 0;
    if (!PQpipelineSync(pc->c)) return conn_lost(pc, PQerrorMessage(pc->c));
    int item = 0, nulls = 0;
    for (;;) {
        int w = wait_ready(pc, p->deadline);
        if (w) {
            rc = w;
            break;
        }
        PGresult *res = PQgetResult(pc->c);
        if (!res) {
            /* The end of one statement's results. */
            if (PQstatus(pc->c) == CONNECTION_BAD || ++nulls > p->nitems) {
                rc = conn_lost(pc, PQerrorMessage(pc->c));
                break;
            }
            item++;
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            break;
        }
        if (item >= p->nitems) {
            PQclear(res);
            rc = conn_lost(pc, "unexpected result in a pipeline");
            break;
        }
        if (st == PGRES_FATAL_ERROR && rc == 0) rc = classify(pc, res);
        if (p->item_q[item] < 0) {
            p->item_ok[item] = st == PGRES_COMMAND_OK;
            PQclear(res);
        } else if (!p->res[p->item_q[item]]) {
            p->res[p->item_q[item]] = res;
        } else {
            PQclear(res);
        }
        if (!pc->c) break;   /* classify closed it */
    }
    /* A statement whose Prepare did not succeed is not prepared. */
    for (int i = 0; pc->c && i < p->nitems; i++)
        if (p->item_q[i] < 0 && !p->item_ok[i])
            u64map_del(&pc->prepared, (uint64_t)(uintptr_t)p->item_sql[i]);
    if (rc == 0)
        for (int q = 0; q < p->nq; q++) {
            ExecStatusType st = p->res[q] ? PQresultStatus(p->res[q]) : PGRES_FATAL_ERROR;
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                iy_log_error("store: postgresql (%s): statement %d of a pipeline did not run", pc->what, q);
                rc = IY_EIO;
                break;
            }
        }
    return rc;
}

PGresult *pgs__pipe_res(pgs_pipe *p, int q)
{
    return q >= 0 && q < p->nq && q < PGS_PIPE_MAX ? p->res[q] : NULL;
}

int pgs__pipe_rows(pgs_pipe *p, int q)
{
    PGresult *r = pgs__pipe_res(p, q);
    return r ? PQntuples(r) : 0;
}

void pgs__pipe_end(pgs_pipe *p)
{
    for (int q = 0; q < p->nq && q < PGS_PIPE_MAX; q++) {
        if (p->res[q]) PQclear(p->res[q]);
        p->res[q] = NULL;
    }
    p->nq = p->nitems = 0;
}

int pgs__exec(pgs_conn *pc, int64_t deadline, const char *sql, const pgs_params *params,
              PGresult **res)
{
    pgs_pipe p;
    if (res) *res = NULL;
    pgs__pipe_begin(&p, pc, deadline);
    int q = pgs__pipe_add(&p, sql, params);
    int rc = pgs__pipe_run(&p);
    if (rc == 0 && res) {
        *res = p.res[q];
        p.res[q] = NULL;
    }
    pgs__pipe_end(&p);
    return rc;
}

int pgs__exec_row(pgs_conn *pc, const char *sql, const pgs_params *params, PGresult **res)
{
    int rc = pgs__exec(pc, pgs__deadline(), sql, params, res);
    if (rc == 0 && PQntuples(*res) != 1) {
        PQclear(*res);
        *res = NULL;
        rc = IY_ENOTFOUND;
    }
    return rc;
}

static const char SQL_ROLLBACK[] = "ROLLBACK";

int pgs__rollback(pgs_conn *pc, int64_t deadline)
{
    if (!pgs__conn_in_tx(pc)) return 0;
    int rc = pgs__exec(pc, deadline, SQL_ROLLBACK, NULL, NULL);
    if (rc && pc->c) {
        pgs__conn_close(pc);   /* a transaction we cannot end must not be reused */
        rc = IY_EUNAVAIL;
    }
    return rc;
}
