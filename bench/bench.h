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
 * receives it: that is the end-to-end latency.
 *
 * Several nodes (disco.c): the coordinator asks GET /v1/discovery once at
 * start; when the answer lists more than one node (or --discovery says so),
 * each worker spreads its connections over the listed nodes by weighted round
 * robin on their spare capacity, and reports its counts per node. With
 * --reconnect a dropped connection asks discovery again, comes back with
 * jittered back-off (at once after close 1012), syncs from the highest pos
 * it has seen and resends its unacknowledged sends with the same cmid
 * (worker.c, "reconnects"). */
#ifndef IY_BENCH_H
#define IY_BENCH_H
#include "base/buf.h"
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

/* ---- disco.c: service discovery ----------------------------------------- */
#define BENCH_MAX_NODES 32

/* One chat node, from a discovery answer (or from --host/--port). */
typedef struct bnode {
    char name[96];                  /* `node`; the URL's host:port when the answer has none */
    char url[192];                  /* ws_url as answered */
    char host_hdr[96];              /* Host header: the URL's host[:port] */
    char path[96];                  /* request path of the upgrade, e.g. /v1/ws */
    uint32_t addr;                  /* IPv4, host byte order */
    int port;
    int64_t connections, capacity;  /* -1 when the answer did not say */
} bnode;

/* A discovery answer: its `nodes` list, or its ws_url alone when it has none. */
typedef struct bdisco {
    int n;
    int listed;                     /* 1: the answer had a `nodes` list */
    int pick;                       /* index of the answer's own ws_url choice in node[], or -1 */
    bnode node[BENCH_MAX_NODES];
} bdisco;

/* Parses a ws:// URL (wss is not spoken here) into nd's url, host_hdr, path,
 * addr and port; host names are resolved (getaddrinfo, IPv4). 0, or -1. */
int disco_parse_url(const char *s, size_t n, bnode *nd);

/* Appends the HTTP/1.1 request for GET /v1/discovery on host:port to b. */
void disco_request(iy_buf *b, const char *host, int port);

/* Parses an HTTP response to that request held in s[0..n): 0 and *d filled
 * when complete and good, 1 when more bytes are needed (eof: no more will
 * come), -1 when it is not a 200 with a usable answer. */
int disco_parse_http(const char *s, size_t n, int eof, bdisco *d);

/* The whole exchange, blocking, at most timeout_ms: 0 and *d filled, or -1. */
int disco_fetch(const char *host, int port, int timeout_ms, bdisco *d);

/* The weight of a node for spreading new connections: its spare capacity
 * (capacity - connections, at least 0), or 1 when the answer gave no
 * figures for some node. */
void disco_weights(const bdisco *d, double *weight);

/* Smooth weighted round robin over n nodes: adds each eligible node's weight
 * to cur[i], picks the largest, subtracts the eligible total from it. Over
 * sum(weights) picks each node is picked weight times, evenly spread. Nodes
 * with ok[i] == 0 are skipped; when no eligible node has a positive weight,
 * the eligible ones count equally. Returns the index, or -1 if none is ok. */
int disco_wrr_pick(double *cur, const double *weight, const int *ok, int n);

/* s at a JSON value (object, array, string, number, literal): returns just
 * past it, or NULL if it is cut short or not well formed. Strings are
 * skipped with their escapes, so braces inside them do not count. */
const char *bench_json_skip(const char *s, const char *e);

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
    int server_pid;             /* 0: no server memory/CPU figures; else the first of server_pids */
    int server_pids[BENCH_MAX_NODES];   /* --server-pid PID[,PID...]: figures summed over them */
    int nserver_pids;
    int db_pid;                 /* --db-pid: a PostgreSQL postmaster; its and its children's CPU */
    int chat;                   /* the `chat` scenario: direct, 1 in flight per sender (as people type) */
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
    int discovery;              /* enum disco_mode */
    int reconnect;              /* --reconnect: dropped connections come back and resume */
    int spread;                 /* connections spread over disco's nodes (else --host/--port) */
    bdisco disco;               /* the answer at start, when spread */
    int slowloris;              /* --slowloris N: attack connections alongside (slowloris.c) */
    buser *users;
    int nusers;
    bgroup *groups;
    int ngroups;
} bparams;

enum disco_mode { DISCO_AUTO = 0, DISCO_ON, DISCO_OFF };

#define BENCH_FIXED_RATE_CAP 256    /* sends in flight per connection at a fixed rate */

/* Per-node figures of one worker (merged by name by the coordinator). */
typedef struct nreport {
    char name[96];
    char url[192];
    uint64_t ready;             /* connections on it at the end */
    uint64_t connects;          /* handshakes that reached ready there, reconnects included */
    uint64_t failed, dropped;   /* handshakes that failed there; ready sockets lost there */
} nreport;

/* What a worker sends back at the end (merged by the coordinator). */
typedef struct wreport {
    uint64_t conns_ok, conns_failed, closed_unexpected, proto_errors, server_errors;
    uint64_t sent, acked, delivered_win, delivered_total, expected_total;
    uint64_t missing, dup_or_reorder, seq_order_errors;
    uint64_t pages, page_errors, caught_up, catchup_errors, synced_msgs;
    uint64_t all_ready_ns, done_ns;     /* monotonic ns: last connection ready, last device caught up */
    uint64_t behind;                    /* fixed rate: sends skipped because a window was full */
    uint64_t shed;                      /* fixed rate: sends the server refused as busy (`unavailable`) */
    /* --reconnect */
    uint64_t reconnects;                /* dropped connections that came back to ready */
    uint64_t reconnect_failures;        /* attempts that failed (and were retried) */
    uint64_t resent;                    /* unacknowledged sends sent again (same cmid) */
    uint64_t offline_ns;                /* sum of the times without a socket */
    uint64_t still_offline;             /* connections without a socket at the end */
    hist h_conn, h_ack, h_e2e, h_req, h_catch;
    hist h_gap;                         /* per reconnect: drop -> ready again */
    int nnodes;
    nreport node[BENCH_MAX_NODES];
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

/* ---- slowloris.c: --slowloris N, an attack alongside the scenario ---- */
#define SLOW_MAX_PROCS 16

typedef struct slreport {
    uint64_t opened;            /* connects started, reopens included */
    uint64_t closed_by_server;  /* open connections the server ended */
    uint64_t answered_408;      /* of those, with a 408 first */
    uint64_t connect_failed;
    uint64_t bytes;             /* trickled header bytes */
    uint64_t open_min, open_mean, open_end;   /* open connections while measured */
} slreport;

typedef struct slattack {
    int n;                      /* attacker processes */
    int up[SLOW_MAX_PROCS], down[SLOW_MAX_PROCS];
    int pid[SLOW_MAX_PROCS];
    uint64_t open_at_start;     /* open when every attacker said ready */
} slattack;

/* Forks the attackers for p->slowloris connections and waits until they
 * are open (or 30 s passed): 0, or -1. */
int slowloris_start(const bparams *p, slattack *s);
void slowloris_go(slattack *s);                       /* the measured run starts */
int slowloris_stop(slattack *s, slreport *total);    /* 0, or -1 if an attacker failed */

/* ---- util (main.c) ---- */
uint64_t bench_now_ns(void);                         /* CLOCK_MONOTONIC */
int search_main(int argc, char **argv);              /* search.c: the search scenario */
int bench_write_full(int fd, const void *p, size_t n);   /* 0 or -1 */
int bench_read_full(int fd, void *p, size_t n);          /* 0, or -1 on EOF/error */

#endif
