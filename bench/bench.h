/* bench.h — internals shared by the files of iyagi-bench (issue 6).
 *
 * iyagi-bench is a client of the public contract (shared/PROTOCOL.md): it
 * speaks WebSocket (RFC 6455, masked client frames) and the JSON ops like any
 * client. One coordinator process (main.c) forks W worker processes
 * (worker.c); each worker runs one epoll loop over its share of the
 * connections, each connection bound to one of many 127.0.x.y source
 * addresses. Workers report over pipes; the coordinator merges histograms
 * (hist.c), reads the server's memory and CPU from /proc, prints a table and
 * one JSON line.
 *
 * Phases, coordinator <-> worker (pipes; one small struct per message):
 *
 *   worker: setup (connect, prefill...) --READY--> coordinator
 *   coordinator --GO(t0)--> every worker          (t0: CLOCK_MONOTONIC ns)
 *   worker: measure from t0 + warmup for `duration`, drain, --RESULT--> coordinator
 *   idle only: worker --MARK(all connected)--> ; coordinator reads RSS,
 *              --STOP--> ; worker --RESULT-->
 *
 * CLOCK_MONOTONIC is system-wide, so a timestamp written into a message's
 * text by one worker is comparable with the clock of the worker that
 * receives it: that is the end-to-end latency. */
#ifndef IY_BENCH_H
#define IY_BENCH_H
#include <stddef.h>
#include <stdint.h>

/* ---- hist.c: log-linear latency histogram (HdrHistogram-like) ----------
 * Values in ns. Exact below 128 ns, then 64 linear sub-buckets per power of
 * two (relative error < 1.6%), up to 2^41 ns (~37 min); larger values are
 * clamped into the last bucket (max is kept exactly). */
#define HIST_SUB_BITS 6
#define HIST_MAX_EXP 41
#define HIST_BUCKETS (2 * (1 << HIST_SUB_BITS) + (HIST_MAX_EXP - HIST_SUB_BITS - 1) * (1 << HIST_SUB_BITS))

typedef struct hist {
    uint64_t n;
    uint64_t max;
    uint64_t min;
    double sum;
    uint64_t b[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_add(hist *h, uint64_t ns);
void hist_merge(hist *into, const hist *from);
uint64_t hist_quantile(const hist *h, double q);   /* ns; 0 if empty; q=1 gives max */

/* ---- scenarios and parameters ------------------------------------------ */
enum scenario { SC_IDLE = 1, SC_DIRECT, SC_GROUP, SC_HISTORY, SC_RESYNC };

typedef struct buser {
    uint64_t id;
    char token[48];
} buser;

typedef struct bgroup {
    uint64_t channel;
    int n;
    int *member;                /* indexes into the users array */
} bgroup;

typedef struct bparams {
    int scenario;
    int workers;
    char host[64];
    int port;
    int server_pid;             /* 0: no server memory/CPU figures */
    int count;                  /* idle N, direct P, group G, history H, resync K */
    double duration, warmup;    /* seconds (direct, group, history) */
    double rate;                /* offered msgs/s in all; 0 = full speed (window) */
    int window;                 /* requests in flight per connection at full speed */
    int senders;                /* group: senders per group (default all members) */
    int msg_bytes;              /* text size in bytes (>= 64) */
    int history_limit;
    int prefill;                /* history: messages sent per channel first */
    int missed;                 /* resync: messages each device misses */
    int concurrency;            /* handshakes in progress per worker */
    double settle;              /* idle: seconds between all-connected and the RSS reading */
    int hb_s;                   /* heartbeat period (contract: 5 s) */
    int addrs_per_worker;       /* source addresses per worker */
    uint64_t nonce;             /* makes cmids unique across runs */
    buser *users;
    int nusers;
    bgroup *groups;
    int ngroups;
} bparams;

#define BENCH_FIXED_RATE_CAP 256    /* sends in flight per connection at a fixed rate */

/* What a worker sends back at the end (merged by the coordinator). */
typedef struct wreport {
    uint64_t conns_ok, conns_failed, closed_unexpected, proto_errors, server_errors;
    uint64_t sent, acked, delivered_win, delivered_total, expected_total;
    uint64_t missing, dup_or_reorder, seq_order_errors;
    uint64_t pages, page_errors, caught_up, catchup_errors, synced_msgs;
    uint64_t all_ready_ns, done_ns;     /* monotonic ns: last connection ready, last device caught up */
    uint64_t behind;                    /* fixed rate: sends skipped because a window was full */
    hist h_conn, h_ack, h_e2e, h_req, h_catch;
} wreport;

/* Pipe messages. */
enum { MSG_READY = 'r', MSG_MARK = 'm', MSG_RESULT = 'R', CMD_GO = 'g', CMD_STOP = 's' };
typedef struct pmsg {
    char kind;
    uint64_t ns;
    uint64_t a, b;
} pmsg;

/* ---- worker.c ---- */
/* Runs worker w of p->workers: takes its share of the scenario, talks to the
 * coordinator on fds to (writes) and from (reads). Returns the exit code. */
int worker_main(const bparams *p, int w, int to, int from);

/* ---- util (main.c) ---- */
uint64_t bench_now_ns(void);                         /* CLOCK_MONOTONIC */
int bench_write_full(int fd, const void *p, size_t n);   /* 0 or -1 */
int bench_read_full(int fd, void *p, size_t n);          /* 0, or -1 on EOF/error */

#endif
