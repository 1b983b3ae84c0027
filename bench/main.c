/* main.c — iyagi-bench: command line and coordinator.
 *
 * Reads the users file written by `iyagid admin create-users` ("id name
 * token" lines, then "group channel member_id..." lines), forks the workers
 * (worker.c), runs the phases described in bench.h over pipes, merges the
 * workers' exact histograms, reads the server's memory (VmRSS) and CPU time
 * from /proc/PID, and prints a human table then one JSON line. Every run is
 * bounded: durations are fixed, drains and reconnects have deadlines, and
 * the coordinator kills nothing but its own workers.
 *
 * Before forking it asks the server's discovery once (disco.c): a `nodes`
 * list of more than one node, or --discovery, spreads the connections over
 * the nodes, and the output gains one line (and one JSON object) per node.
 * Against a single node without those options the output is what it always
 * was. */
#include "bench.h"
#include "base/alloc.h"
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int bench_read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: iyagi-bench SCENARIO --users FILE --port PORT [options]\n"
        "scenarios:\n"
        "  idle     --count N connections authenticate and stay idle (heartbeats every 5 s);\n"
        "           connect+auth rate, server memory per connection (needs --server-pid)\n"
        "  chat     direct with --window 1 and --count 500 by default: each sender waits for its ack\n"
        "           before the next message, as people type (the chat-like shape of issue 15)\n"
        "  direct   --count P pairs (users 2i, 2i+1) send 1:1 messages to each other; full speed\n"
        "           (--window in flight per connection) or --rate R msgs/s offered in all\n"
        "  group    --count G groups from the users file, all members online; --senders S per group\n"
        "  history  --count H connections page their channel's history at random (--limit)\n"
        "  resync   --count K devices go offline, miss --missed messages each, reconnect at once\n"
        "  search   --count C clients ask GET /v1/search in turn, the queries of a users file made by\n"
        "           iyagid admin create-users ... --messages M (bench/search.c; --user N, --limit L)\n"
        "options:\n"
        "  --host A (127.0.0.1) --port P --server-pid PID --workers W (2) --duration S (10)\n"
        "  --warmup S (2) --rate R (0: full speed) --window N (4) --senders S (all) --msg-bytes B (100)\n"
        "  --limit L (50) --prefill N (200) --missed N (200) --concurrency N (256 handshakes per worker)\n"
        "  --settle S (6) --hb S (5) --addrs N (32 source addresses 127.0.x.y per worker)\n"
        "  --label TEXT (a name for the run in the output)\n"
        "  --slowloris N   N more connections, from 127.1.x.y, each trickling a never-ending request head\n"
        "                  (a byte every 2 s) and reopened when the server closes it, during the whole run\n"
        "  --server-pid PID[,PID...]: memory and CPU are summed over several server processes\n"
        "  --db-pid PID    a PostgreSQL postmaster: the database's CPU (it and its children) is reported\n"
        "                  apart from the server's\n"
        "server figures over the measured window (direct, chat, group, history; needs --server-pid):\n"
        "  CPU per message and per delivery (us), %% of a core, read+write syscalls per message\n"
        "  (/proc/PID/io syscr + syscw), and the CPU per message of each server thread\n"
        "several nodes:\n"
        "  --discovery     spread the connections over the nodes GET /v1/discovery lists on --host:--port,\n"
        "                  weighted by spare capacity (the default when it lists more than one node)\n"
        "  --no-discovery  connect to --host:--port only, never ask discovery\n"
        "  --reconnect     a dropped connection asks discovery again and comes back (jittered back-off\n"
        "                  from 250 ms to 10 s, at once after close 1012), syncs from its pos and resends\n"
        "                  its unacknowledged sends with the same cmid; reports reconnects and the time\n"
        "                  without a socket\n");
}

static int load_users(const char *path, bparams *p)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "iyagi-bench: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, ucap = 0, gcap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (!strncmp(line, "group ", 6)) {
            if (p->ngroups == (int)gcap) {
                gcap = gcap ? 2 * gcap : 64;
                p->groups = iy_realloc(p->groups, gcap * sizeof *p->groups);
            }
            bgroup *g = &p->groups[p->ngroups++];
            char *s = line + 6, *end;
            g->channel = strtoull(s, &end, 10);
            g->n = 0;
            g->member = iy_calloc(128, sizeof *g->member);
            for (s = end; g->n < 128; s = end) {
                uint64_t id = strtoull(s, &end, 10);
                if (end == s) break;
                /* Users are written in creation order, so ids ascend: binary search. */
                int lo = 0, hi = p->nusers - 1, at = -1;
                while (lo <= hi) {
                    int mid = (lo + hi) / 2;
                    if (p->users[mid].id == id) { at = mid; break; }
                    if (p->users[mid].id < id) lo = mid + 1; else hi = mid - 1;
                }
                if (at < 0) {
                    fprintf(stderr, "iyagi-bench: group member %llu is not in the users file\n",
                            (unsigned long long)id);
                    fclose(f);
                    free(line);
                    return -1;
                }
                g->member[g->n++] = at;
            }
            continue;
        }
        unsigned long long id;
        char name[64], token[48];
        if (sscanf(line, "%llu %63s %47s", &id, name, token) != 3) continue;
        if (p->nusers == (int)ucap) {
            ucap = ucap ? 2 * ucap : 1024;
            p->users = iy_realloc(p->users, ucap * sizeof *p->users);
        }
        buser *u = &p->users[p->nusers++];
        u->id = id;
        snprintf(u->token, sizeof u->token, "%s", token);
    }
    free(line);
    fclose(f);
    return 0;
}

/* Server figures from /proc: VmRSS in KiB, CPU seconds (user + system). */
static long server_rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    if (pid <= 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static double server_cpu_s(int pid)
{
    char path[64], buf[2048];
    if (pid <= 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *s = strrchr(buf, ')');
    if (!s) return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ... utime is field 14, stime 15 */
    if (sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The sums over every --server-pid; -1 when none could be read. */
static long servers_rss_kib(const bparams *p)
{
    long sum = -1;
    for (int i = 0; i < p->nserver_pids; i++) {
        long v = server_rss_kib(p->server_pids[i]);
        if (v >= 0) sum = (sum < 0 ? 0 : sum) + v;
    }
    return sum;
}

static double servers_cpu_s(const bparams *p)
{
    double sum = -1;
    for (int i = 0; i < p->nserver_pids; i++) {
        double v = server_cpu_s(p->server_pids[i]);
        if (v >= 0) sum = (sum < 0 ? 0 : sum) + v;
    }
    return sum;
}

static int parse_pids(const char *v, bparams *p)
{
    p->nserver_pids = 0;
    for (const char *s = v; *s; ) {
        char *end;
        long pid = strtol(s, &end, 10);
        if (end == s || pid <= 0 || p->nserver_pids == BENCH_MAX_NODES) return -1;
        if (*end && *end != ',') return -1;
        p->server_pids[p->nserver_pids++] = (int)pid;
        s = *end == ',' ? end + 1 : end;
    }
    p->server_pid = p->nserver_pids ? p->server_pids[0] : 0;
    return p->nserver_pids ? 0 : -1;
}

/* ---- the measured window's server figures ----------------------------------
 * At the window's start and end (go + warmup, + duration: the instants the
 * workers count from) the coordinator reads, for every --server-pid:
 *   - CPU time (utime + stime of /proc/PID/stat: every thread, live or ended);
 *   - syscr + syscw of /proc/PID/io: the read-family (read, readv, pread,
 *     preadv) and write-family (write, writev, pwrite, pwritev) system calls of
 *     the whole process. They miss recvmsg/sendmsg/sendto, epoll_wait, futex,
 *     fsync/fdatasync, accept, io_uring: see docs/BENCHMARKS.md, "Scenarios";
 *   - each thread's CPU time (/proc/PID/task/TID/stat), so the CPU per message
 *     splits by thread; threads are listed in TID (creation) order;
 * and, with --db-pid (a PostgreSQL postmaster), the database's CPU: the
 * postmaster's own time and its waited-for children's (cutime + cstime), plus
 * every live child's (a process whose parent is the postmaster). */
#define BENCH_MAX_THREADS 64

typedef struct tsample {
    int pid, tid;
    char comm[20];
    double cpu_s;
} tsample;

typedef struct ssample {
    int ok;                     /* the server's /proc could be read */
    double cpu_s;
    uint64_t syscr, syscw;
    int io_ok;
    double db_cpu_s;            /* -1 without --db-pid */
    int nthr;
    tsample thr[BENCH_MAX_THREADS];
} ssample;

/* utime + stime (+ cutime + cstime when children) of a /proc .../stat file, in s;
 * *ppid and comm (may be NULL) filled. -1 when unreadable. */
static double stat_cpu_s(const char *path, int children, int *ppid, char *comm, size_t comm_n)
{
    char buf[2048];
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *o = strchr(buf, '('), *s = strrchr(buf, ')');
    if (!o || !s) return -1;
    if (comm) snprintf(comm, comm_n, "%.*s", (int)(s - o - 1), o + 1);
    int pp = 0;
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    /* after ")": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) */
    if (sscanf(s + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &pp, &ut, &st,
               &cut, &cst) != 5)
        return -1;
    if (ppid) *ppid = pp;
    return (double)(ut + st + (children ? cut + cst : 0)) / (double)sysconf(_SC_CLK_TCK);
}

static int proc_io(int pid, uint64_t *syscr, uint64_t *syscw)
{
    char path[64], line[128];
    int got = 0;
    snprintf(path, sizeof path, "/proc/%d/io", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "syscr:", 6)) *syscr += strtoull(line + 6, NULL, 10), got++;
        else if (!strncmp(line, "syscw:", 6)) *syscw += strtoull(line + 6, NULL, 10), got++;
    }
    fclose(f);
    return got == 2 ? 0 : -1;
}

static int tid_cmp(const void *a, const void *b)
{
    const tsample *x = a, *y = b;
    return x->pid != y->pid ? (x->pid < y->pid ? -1 : 1) : x->tid < y->tid ? -1 : x->tid > y->tid;
}

static double db_cpu_s(int postmaster)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", postmaster);
    double sum = stat_cpu_s(path, 1, NULL, NULL, 0);
    if (sum < 0) return -1;
    DIR *d = opendir("/proc");
    if (!d) return sum;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        int ppid = 0;
        snprintf(path, sizeof path, "/proc/%.20s/stat", e->d_name);
        double v = stat_cpu_s(path, 0, &ppid, NULL, 0);
        if (v >= 0 && ppid == postmaster) sum += v;
    }
    closedir(d);
    return sum;
}

static void sample_servers(const bparams *p, ssample *s)
{
    memset(s, 0, sizeof *s);
    s->db_cpu_s = p->db_pid > 0 ? db_cpu_s(p->db_pid) : -1;
    s->io_ok = 1;
    for (int i = 0; i < p->nserver_pids; i++) {
        int pid = p->server_pids[i];
        char path[96];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        double v = stat_cpu_s(path, 0, NULL, NULL, 0);
        if (v < 0) continue;
        s->ok = 1;
        s->cpu_s += v;
        if (proc_io(pid, &s->syscr, &s->syscw) != 0) s->io_ok = 0;
        snprintf(path, sizeof path, "/proc/%d/task", pid);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) && s->nthr < BENCH_MAX_THREADS) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
            tsample *t = &s->thr[s->nthr];
            snprintf(path, sizeof path, "/proc/%d/task/%.20s/stat", pid, e->d_name);
            t->cpu_s = stat_cpu_s(path, 0, NULL, t->comm, sizeof t->comm);
            if (t->cpu_s < 0) continue;
            t->pid = pid;
            t->tid = atoi(e->d_name);
            s->nthr++;
        }
        if (d) closedir(d);
    }
    qsort(s->thr, (size_t)s->nthr, sizeof *s->thr, tid_cmp);
    if (!s->ok) s->io_ok = 0;
}

/* A thread's CPU over the window: its time at the end minus at the start (0 if it started later). */
static double thread_delta(const ssample *a, const tsample *t)
{
    for (int i = 0; i < a->nthr; i++)
        if (a->thr[i].pid == t->pid && a->thr[i].tid == t->tid) return t->cpu_s - a->thr[i].cpu_s;
    return t->cpu_s;
}

static void sleep_until(uint64_t ns)
{
    struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

/* Adds a worker's per-node figures into the total, matched by node name. */
static void merge_nodes(wreport *into, const wreport *from)
{
    for (int i = 0; i < from->nnodes; i++) {
        const nreport *f = &from->node[i];
        int k = 0;
        while (k < into->nnodes && strcmp(into->node[k].name, f->name) != 0) k++;
        if (k == into->nnodes) {
            if (k == BENCH_MAX_NODES) continue;
            into->nnodes++;
            memset(&into->node[k], 0, sizeof into->node[k]);
            memcpy(into->node[k].name, f->name, sizeof f->name);
            memcpy(into->node[k].url, f->url, sizeof f->url);
        }
        into->node[k].ready += f->ready;
        into->node[k].connects += f->connects;
        into->node[k].failed += f->failed;
        into->node[k].dropped += f->dropped;
    }
}

/* Node names and URLs come from the server: keep them JSON-safe. */
static void json_safe(char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) *s = '_';
}

static const char *scenario_name(int s)
{
    static const char *names[] = { "", "idle", "direct", "group", "history", "resync" };
    return s >= SC_IDLE && s <= SC_RESYNC ? names[s] : "?";
}

static void free_params(bparams *p)
{
    for (int i = 0; i < p->ngroups; i++) free(p->groups[i].member);
    free(p->groups);
    free(p->users);
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static void print_hist_row(const char *name, const hist *h)
{
    if (!h->n) return;
    printf("  %-22s n=%-9llu p50 %8.3f  p90 %8.3f  p99 %8.3f  max %8.3f ms\n", name,
           (unsigned long long)h->n, ms(hist_quantile(h, 0.5)), ms(hist_quantile(h, 0.9)),
           ms(hist_quantile(h, 0.99)), ms(h->max));
}

static void json_hist(const char *name, const hist *h)
{
    printf(",\"%s\":{\"n\":%llu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}", name,
           (unsigned long long)h->n, ms(hist_quantile(h, 0.5)), ms(hist_quantile(h, 0.9)),
           ms(hist_quantile(h, 0.99)), ms(h->max));
}

int main(int argc, char **argv)
{
    bparams p = { .workers = 2, .port = 0, .duration = 10, .warmup = 2, .window = 4,
                  .msg_bytes = 100, .history_limit = 50, .prefill = 200, .missed = 200,
                  .concurrency = 256, .settle = 6, .hb_s = 5, .addrs_per_worker = 32 };
    snprintf(p.host, sizeof p.host, "127.0.0.1");
    const char *users = NULL, *label = "";
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sc = argv[1];
    if (!strcmp(sc, "--help") || !strcmp(sc, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(sc, "search")) return search_main(argc, argv);
    if (!strcmp(sc, "chat")) {
        p.chat = 1;
        p.window = 1;
        p.count = 500;
    }
    p.scenario = !strcmp(sc, "idle") ? SC_IDLE : !strcmp(sc, "direct") || p.chat ? SC_DIRECT
               : !strcmp(sc, "group") ? SC_GROUP : !strcmp(sc, "history") ? SC_HISTORY
               : !strcmp(sc, "resync") ? SC_RESYNC : 0;
    if (!p.scenario) {
        fprintf(stderr, "iyagi-bench: unknown scenario %s\n", sc);
        usage(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        /* the options without a value */
        if (!strcmp(a, "--discovery")) {
            p.discovery = DISCO_ON;
            continue;
        }
        if (!strcmp(a, "--no-discovery")) {
            p.discovery = DISCO_OFF;
            continue;
        }
        if (!strcmp(a, "--reconnect")) {
            p.reconnect = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "iyagi-bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--users")) users = v;
        else if (!strcmp(a, "--host")) snprintf(p.host, sizeof p.host, "%s", v);
        else if (!strcmp(a, "--port")) p.port = atoi(v);
        else if (!strcmp(a, "--server-pid")) {
            if (parse_pids(v, &p) != 0) {
                fprintf(stderr, "iyagi-bench: --server-pid takes PID[,PID...]\n");
                return 2;
            }
        }
        else if (!strcmp(a, "--db-pid")) p.db_pid = atoi(v);
        else if (!strcmp(a, "--workers")) p.workers = atoi(v);
        else if (!strcmp(a, "--count")) p.count = atoi(v);
        else if (!strcmp(a, "--duration")) p.duration = atof(v);
        else if (!strcmp(a, "--warmup")) p.warmup = atof(v);
        else if (!strcmp(a, "--rate")) p.rate = atof(v);
        else if (!strcmp(a, "--window")) p.window = atoi(v);
        else if (!strcmp(a, "--senders")) p.senders = atoi(v);
        else if (!strcmp(a, "--msg-bytes")) p.msg_bytes = atoi(v);
        else if (!strcmp(a, "--limit")) p.history_limit = atoi(v);
        else if (!strcmp(a, "--prefill")) p.prefill = atoi(v);
        else if (!strcmp(a, "--missed")) p.missed = atoi(v);
        else if (!strcmp(a, "--concurrency")) p.concurrency = atoi(v);
        else if (!strcmp(a, "--settle")) p.settle = atof(v);
        else if (!strcmp(a, "--hb")) p.hb_s = atoi(v);
        else if (!strcmp(a, "--addrs")) p.addrs_per_worker = atoi(v);
        else if (!strcmp(a, "--label")) label = v;
        else if (!strcmp(a, "--slowloris")) p.slowloris = atoi(v);
        else {
            fprintf(stderr, "iyagi-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!users || p.port <= 0 || p.port > 65535 || p.count <= 0 || p.workers < 1 || p.workers > 64 ||
        p.duration <= 0 || p.duration > 600 || p.warmup < 0 || p.window < 1 || p.window > 100 ||
        p.msg_bytes < 64 || p.msg_bytes > 4000 || p.history_limit < 1 || p.history_limit > 200 ||
        p.concurrency < 1 || p.hb_s < 1 || p.addrs_per_worker < 1 || p.addrs_per_worker > 1000 ||
        p.workers * p.addrs_per_worker > 250 * 250 || p.prefill < 1 || p.missed < 1 || p.settle > 50 ||
        p.slowloris < 0 || p.slowloris > 90000) {
        fprintf(stderr, "iyagi-bench: --users, --port and --count are required; a value is out of range\n");
        return 2;
    }
    if (load_users(users, &p) != 0) return 1;
    int need = p.scenario == SC_IDLE ? p.count : p.scenario == SC_GROUP ? 0 : 2 * p.count;
    if (p.scenario == SC_GROUP && p.count > p.ngroups) {
        fprintf(stderr, "iyagi-bench: %d groups asked, the users file has %d\n", p.count, p.ngroups);
        free_params(&p);
        return 2;
    }
    if (need > p.nusers) {
        fprintf(stderr, "iyagi-bench: %s --count %d needs %d users, the file has %d\n", sc, p.count, need,
                p.nusers);
        free_params(&p);
        return 2;
    }
    {
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        p.nonce = (uint64_t)rt.tv_sec * 1000000ull + (uint64_t)rt.tv_nsec / 1000;
    }
    signal(SIGPIPE, SIG_IGN);
    if (p.discovery != DISCO_OFF) {
        /* One answer for the whole run's start; workers refresh it on reconnects. */
        bdisco d;
        if (disco_fetch(p.host, p.port, 5000, &d) == 0) {
            if (p.discovery == DISCO_ON || (d.listed && d.n > 1)) {
                p.spread = 1;
                p.disco = d;
            }
        } else if (p.discovery == DISCO_ON) {
            fprintf(stderr, "iyagi-bench: --discovery: no usable answer from http://%s:%d/v1/discovery\n",
                    p.host, p.port);
            return 1;
        }
    }
    fflush(stdout);

    slattack slow = { 0 };
    if (p.slowloris) {
        if (slowloris_start(&p, &slow) != 0) {
            fprintf(stderr, "iyagi-bench: --slowloris: the attackers did not start\n");
            return 1;
        }
        printf("  slowloris: %llu of %d attack connections open before the run\n",
               (unsigned long long)slow.open_at_start, p.slowloris);
        fflush(stdout);
    }
    int W = p.workers;
    int *up = iy_calloc((size_t)W, sizeof *up), *down = iy_calloc((size_t)W, sizeof *down);
    pid_t *pids = iy_calloc((size_t)W, sizeof *pids);
    for (int i = 0; i < W; i++) {
        int a[2], b[2];
        if (pipe(a) != 0 || pipe(b) != 0) {
            perror("iyagi-bench: pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("iyagi-bench: fork");
            return 1;
        }
        if (pid == 0) {
            for (int k = 0; k < i; k++) {
                close(up[k]);
                close(down[k]);
            }
            close(a[0]);
            close(b[1]);
            _exit(worker_main(&p, i, a[1], b[0]));
        }
        close(a[1]);
        close(b[0]);
        up[i] = a[0];
        down[i] = b[1];
        pids[i] = pid;
    }
    int failed = 0;
    pmsg m;
    for (int i = 0; i < W && !failed; i++)
        if (bench_read_full(up[i], &m, sizeof m) != 0 || m.kind != MSG_READY) failed = 1;
    long rss0 = p.server_pid ? servers_rss_kib(&p) : -1, rss1 = -1;
    double cpu0 = p.server_pid ? servers_cpu_s(&p) : -1, cpu1 = -1;
    uint64_t go = bench_now_ns(), all_ready = 0, end = 0;
    pmsg cmd = { .kind = CMD_GO, .ns = go };
    for (int i = 0; i < W && !failed; i++)
        if (bench_write_full(down[i], &cmd, sizeof cmd) != 0) failed = 1;
    if (p.slowloris) slowloris_go(&slow);
    /* The window the workers measure: the server's figures at its two ends. */
    ssample s0 = { 0 }, s1 = { 0 };
    int windowed = p.scenario == SC_DIRECT || p.scenario == SC_GROUP || p.scenario == SC_HISTORY;
    if (windowed && !failed && (p.server_pid || p.db_pid)) {
        sleep_until(go + (uint64_t)(p.warmup * 1e9));
        sample_servers(&p, &s0);
        sleep_until(go + (uint64_t)((p.warmup + p.duration) * 1e9));
        sample_servers(&p, &s1);
    }
    if (p.scenario == SC_IDLE && !failed) {
        for (int i = 0; i < W && !failed; i++) {
            if (bench_read_full(up[i], &m, sizeof m) != 0 || m.kind != MSG_MARK) failed = 1;
            else if (m.ns > all_ready) all_ready = m.ns;
        }
        cpu1 = p.server_pid ? servers_cpu_s(&p) : -1;
        struct timespec st = { .tv_sec = (time_t)p.settle,
                               .tv_nsec = (long)((p.settle - (double)(time_t)p.settle) * 1e9) };
        nanosleep(&st, NULL);
        rss1 = p.server_pid ? servers_rss_kib(&p) : -1;
        cmd.kind = CMD_STOP;
        for (int i = 0; i < W && !failed; i++)
            if (bench_write_full(down[i], &cmd, sizeof cmd) != 0) failed = 1;
    }
    wreport total, r;
    memset(&total, 0, sizeof total);
    hist_init(&total.h_conn);
    hist_init(&total.h_ack);
    hist_init(&total.h_e2e);
    hist_init(&total.h_req);
    hist_init(&total.h_catch);
    hist_init(&total.h_gap);
    for (int i = 0; i < W && !failed; i++) {
        if (bench_read_full(up[i], &m, sizeof m) != 0 || m.kind != MSG_RESULT ||
            bench_read_full(up[i], &r, sizeof r) != 0) {
            failed = 1;
            break;
        }
        if (m.ns > end) end = m.ns;
#define ADD(f) total.f += r.f
        ADD(conns_ok); ADD(conns_failed); ADD(closed_unexpected); ADD(proto_errors); ADD(server_errors);
        ADD(sent); ADD(acked); ADD(delivered_win); ADD(delivered_total); ADD(expected_total);
        ADD(missing); ADD(dup_or_reorder); ADD(seq_order_errors); ADD(pages); ADD(page_errors);
        ADD(caught_up); ADD(catchup_errors); ADD(synced_msgs); ADD(behind); ADD(shed);
        ADD(reconnects); ADD(reconnect_failures); ADD(resent); ADD(offline_ns); ADD(still_offline);
#undef ADD
        merge_nodes(&total, &r);
        hist_merge(&total.h_gap, &r.h_gap);
        if (r.done_ns > total.done_ns) total.done_ns = r.done_ns;
        hist_merge(&total.h_conn, &r.h_conn);
        hist_merge(&total.h_ack, &r.h_ack);
        hist_merge(&total.h_e2e, &r.h_e2e);
        hist_merge(&total.h_req, &r.h_req);
        hist_merge(&total.h_catch, &r.h_catch);
    }
    if (p.scenario != SC_IDLE) cpu1 = p.server_pid ? servers_cpu_s(&p) : -1;
    long rss_attack = p.slowloris && p.server_pid ? servers_rss_kib(&p) : -1;
    slreport slr = { 0 };
    if (p.slowloris && slowloris_stop(&slow, &slr) != 0) failed = 1;
    for (int i = 0; i < W; i++) {
        if (failed) kill(pids[i], SIGTERM); /* our own workers only */
        close(down[i]);
        int st;
        waitpid(pids[i], &st, 0);
        close(up[i]);
    }
    free(up);
    free(down);
    free(pids);
    if (failed) {
        fprintf(stderr, "iyagi-bench: a worker failed\n");
        free_params(&p);
        return 1;
    }

    /* ---- figures ---- */
    double win_s = p.duration;
    double busy_s = p.scenario == SC_IDLE ? (double)(all_ready - go) / 1e9
                  : p.scenario == SC_RESYNC ? (double)(total.done_ns > go ? total.done_ns - go : 0) / 1e9
                  : p.warmup + p.duration;
    double cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    /* With --reconnect a dropped connection is expected (a node killed or
     * drained on purpose): what counts is one still without a socket at the end. */
    uint64_t errors = total.conns_failed + (p.reconnect ? total.still_offline : total.closed_unexpected) +
                      total.proto_errors + total.server_errors + total.missing + total.dup_or_reorder +
                      total.seq_order_errors + total.page_errors + total.catchup_errors;
    for (int i = 0; i < total.nnodes; i++) {
        json_safe(total.node[i].name);
        json_safe(total.node[i].url);
    }
    printf("== iyagi-bench %s %s (count %d, workers %d%s%s)\n", sc, label, p.count, W,
           p.rate > 0 ? ", fixed rate" : "", p.scenario == SC_DIRECT || p.scenario == SC_GROUP ? "" : "");
    printf("  connections ok %llu, failed %llu, dropped %llu; protocol errors %llu, server errors %llu\n",
           (unsigned long long)total.conns_ok, (unsigned long long)total.conns_failed,
           (unsigned long long)total.closed_unexpected, (unsigned long long)total.proto_errors,
           (unsigned long long)total.server_errors);
    if (p.spread)
        for (int i = 0; i < total.nnodes; i++) {
            const nreport *n = &total.node[i];
            printf("  node %s (%s): %llu connected at the end; %llu handshakes ok, %llu failed; %llu dropped\n",
                   n->name, n->url, (unsigned long long)n->ready, (unsigned long long)n->connects,
                   (unsigned long long)n->failed, (unsigned long long)n->dropped);
        }
    if (p.reconnect) {
        printf("  reconnects %llu (failed attempts %llu), sends resent %llu, without a socket at the end %llu; "
               "time without a socket %.3f s in all\n",
               (unsigned long long)total.reconnects, (unsigned long long)total.reconnect_failures,
               (unsigned long long)total.resent, (unsigned long long)total.still_offline,
               (double)total.offline_ns / 1e9);
        print_hist_row("without a socket", &total.h_gap);
    }
    double rate_conn = 0, mem_per_conn = 0, delivered_s = 0, msgs_s = 0, pages_s = 0;
    switch (p.scenario) {
    case SC_IDLE:
        rate_conn = busy_s > 0 ? (double)total.conns_ok / busy_s : 0;
        mem_per_conn = rss0 >= 0 && rss1 >= 0 && total.conns_ok ? (double)(rss1 - rss0) * 1024.0 / (double)total.conns_ok : -1;
        printf("  connect+auth: %llu in %.2f s = %.0f conn/s\n", (unsigned long long)total.conns_ok, busy_s, rate_conn);
        if (rss0 >= 0) printf("  server RSS %ld KiB -> %ld KiB after %.0f s idle: %.0f bytes per connection\n",
                              rss0, rss1, p.settle, mem_per_conn);
        print_hist_row("connect+auth latency", &total.h_conn);
        break;
    case SC_DIRECT:
    case SC_GROUP:
        delivered_s = (double)total.delivered_win / win_s;
        msgs_s = (double)total.h_ack.n / win_s;
        printf("  %s: sent (acked) %.0f msgs/s, delivered %.0f msgs/s over %.0f s%s\n",
               p.rate > 0 ? "offered rate" : "full speed", msgs_s, delivered_s, win_s,
               p.rate > 0 ? "" : "");
        if (p.rate > 0) printf("  offered %.0f msgs/s; sends skipped (a connection had %d in flight): %llu; "
                               "refused by the server as busy (shed, not stored): %llu\n",
                               p.rate, BENCH_FIXED_RATE_CAP, (unsigned long long)total.behind,
                               (unsigned long long)total.shed);
        printf("  whole run: sent %llu, acked %llu, deliveries expected %llu, received %llu\n",
               (unsigned long long)total.sent, (unsigned long long)total.acked,
               (unsigned long long)total.expected_total, (unsigned long long)total.delivered_total);
        printf("  lost %llu, duplicated/reordered %llu, seq order errors %llu\n",
               (unsigned long long)total.missing, (unsigned long long)total.dup_or_reorder,
               (unsigned long long)total.seq_order_errors);
        print_hist_row("ack latency", &total.h_ack);
        print_hist_row("end-to-end latency", &total.h_e2e);
        break;
    case SC_HISTORY:
        pages_s = (double)total.pages / win_s;
        printf("  %.0f pages/s (limit %d) over %.0f s; wrong page sizes %llu\n", pages_s, p.history_limit,
               win_s, (unsigned long long)total.page_errors);
        print_hist_row("page latency", &total.h_req);
        break;
    case SC_RESYNC:
        printf("  %llu of %d devices caught up (%d missed messages each, %llu synced) in %.3f s; errors %llu\n",
               (unsigned long long)total.caught_up, p.count, p.missed, (unsigned long long)total.synced_msgs,
               busy_s, (unsigned long long)total.catchup_errors);
        print_hist_row("reconnect+auth", &total.h_conn);
        print_hist_row("time to caught-up", &total.h_catch);
        break;
    }
    if (cpu >= 0)
        printf("  server CPU %.2f s over %.2f s = %.2f cores\n", cpu,
               p.scenario == SC_IDLE ? busy_s : (double)(end - go) / 1e9,
               cpu / (p.scenario == SC_IDLE ? (busy_s > 0 ? busy_s : 1) : (double)(end - go) / 1e9));
    if (p.slowloris) {
        printf("  slowloris %d (a header byte every 2 s per connection, reopened when closed): open during the "
               "run min >= %llu, mean %llu, at the end %llu; %llu connects in all, %llu closed by the server "
               "(%llu with a 408), %llu connects failed\n",
               p.slowloris, (unsigned long long)slr.open_min, (unsigned long long)slr.open_mean,
               (unsigned long long)slr.open_end, (unsigned long long)slr.opened,
               (unsigned long long)slr.closed_by_server, (unsigned long long)slr.answered_408,
               (unsigned long long)slr.connect_failed);
        if (rss_attack >= 0) printf("  server RSS under the attack, at the end of the run: %ld KiB\n", rss_attack);
    }
    /* The window's server figures: per message (direct: per delivered message;
     * group: per acknowledged message and per delivery; history: per page). */
    double w_cpu = -1, w_msgs = 0, w_deliv = 0, us_msg = -1, us_deliv = -1, w_pct = -1;
    double sys_r = -1, sys_w = -1, db_pct = -1, db_us = -1;
    if (windowed && s0.ok && s1.ok) {
        w_cpu = s1.cpu_s - s0.cpu_s;
        w_msgs = p.scenario == SC_DIRECT ? (double)total.delivered_win
               : p.scenario == SC_GROUP ? (double)total.h_ack.n : (double)total.pages;
        w_deliv = (double)total.delivered_win;
        w_pct = 100.0 * w_cpu / p.duration;
        if (w_msgs > 0) us_msg = 1e6 * w_cpu / w_msgs;
        if (p.scenario == SC_GROUP && w_deliv > 0) us_deliv = 1e6 * w_cpu / w_deliv;
        if (s0.io_ok && s1.io_ok && w_msgs > 0) {
            sys_r = (double)(s1.syscr - s0.syscr) / w_msgs;
            sys_w = (double)(s1.syscw - s0.syscw) / w_msgs;
        }
    }
    if (windowed && s0.db_cpu_s >= 0 && s1.db_cpu_s >= 0) {
        db_pct = 100.0 * (s1.db_cpu_s - s0.db_cpu_s) / p.duration;
        if (w_msgs > 0) db_us = 1e6 * (s1.db_cpu_s - s0.db_cpu_s) / w_msgs;
    }
    const char *per = p.scenario == SC_HISTORY ? "page" : "message";
    if (w_cpu >= 0) {
        printf("  server over the %.0f s window: %.1f %% of a core; %.2f us CPU per %s", p.duration, w_pct,
               us_msg, per);
        if (us_deliv >= 0) printf(", %.3f us per delivery", us_deliv);
        if (sys_r >= 0)
            printf("; %.2f read+write syscalls per %s (%.2f reads, %.2f writes)", sys_r + sys_w, per, sys_r,
                   sys_w);
        printf("\n  server CPU by thread (TID order = creation order; us per %s, %% of a core):", per);
        for (int i = 0, k = 0; i < s1.nthr; i++) {
            double d = thread_delta(&s0, &s1.thr[i]);
            if (d <= 0) continue;
            printf("%s t%d/%d %.2f (%.1f%%)", k++ % 4 ? "," : "\n   ", i, s1.thr[i].tid,
                   w_msgs > 0 ? 1e6 * d / w_msgs : 0, 100.0 * d / p.duration);
        }
        printf("\n");
    }
    if (db_pct >= 0)
        printf("  database (pid %d and children) over the window: %.1f %% of a core; %.2f us CPU per %s\n",
               p.db_pid, db_pct, db_us, per);
    printf("  errors in all: %llu\n", (unsigned long long)errors);

    /* ---- one JSON line ---- */
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    printf("{\"bench\":\"iyagi\",\"scenario\":\"%s\",\"label\":\"%s\",\"date\":\"%s\",\"count\":%d,"
           "\"workers\":%d,\"rate\":%.0f,\"window\":%d,\"msg_bytes\":%d,\"duration_s\":%.1f",
           p.chat ? "chat" : scenario_name(p.scenario), label, date, p.count, W, p.rate, p.window, p.msg_bytes, p.duration);
    printf(",\"conns_ok\":%llu,\"conns_failed\":%llu,\"dropped\":%llu,\"errors\":%llu",
           (unsigned long long)total.conns_ok, (unsigned long long)total.conns_failed,
           (unsigned long long)total.closed_unexpected, (unsigned long long)errors);
    if (cpu >= 0) printf(",\"server_cpu_s\":%.2f", cpu);
    if (p.scenario == SC_DIRECT)
        printf(",\"shape\":\"%s\"", p.rate > 0 ? "fixed-rate" : p.chat ? "chat" : "pipelined");
    if (w_cpu >= 0) {
        printf(",\"win_cpu_s\":%.3f,\"cpu_pct\":%.1f,\"us_per_msg\":%.3f", w_cpu, w_pct, us_msg);
        if (us_deliv >= 0) printf(",\"us_per_delivery\":%.3f", us_deliv);
        if (sys_r >= 0)
            printf(",\"syscalls_per_msg\":%.3f,\"reads_per_msg\":%.3f,\"writes_per_msg\":%.3f", sys_r + sys_w,
                   sys_r, sys_w);
        printf(",\"threads\":[");
        for (int i = 0, k = 0; i < s1.nthr; i++) {
            double d = thread_delta(&s0, &s1.thr[i]);
            if (d <= 0) continue;
            json_safe(s1.thr[i].comm);
            printf("%s{\"i\":%d,\"tid\":%d,\"comm\":\"%s\",\"cpu_pct\":%.1f,\"us_per_msg\":%.3f}", k++ ? "," : "",
                   i, s1.thr[i].tid, s1.thr[i].comm, 100.0 * d / p.duration, w_msgs > 0 ? 1e6 * d / w_msgs : 0);
        }
        printf("]");
    }
    if (db_pct >= 0) printf(",\"db_cpu_pct\":%.1f,\"db_us_per_msg\":%.3f", db_pct, db_us);
    if (db_pct >= 0 && p.scenario == SC_GROUP && w_deliv > 0)
        printf(",\"db_us_per_delivery\":%.3f", 1e6 * (s1.db_cpu_s - s0.db_cpu_s) / w_deliv);
    if (p.slowloris)
        printf(",\"slowloris\":%d,\"slowloris_open_min\":%llu,\"slowloris_open_mean\":%llu,"
               "\"slowloris_closed\":%llu,\"slowloris_408\":%llu,\"server_rss_attack_kib\":%ld",
               p.slowloris, (unsigned long long)slr.open_min, (unsigned long long)slr.open_mean,
               (unsigned long long)slr.closed_by_server, (unsigned long long)slr.answered_408, rss_attack);
    if (p.spread) {
        printf(",\"nodes\":[");
        for (int i = 0; i < total.nnodes; i++) {
            const nreport *n = &total.node[i];
            printf("%s{\"node\":\"%s\",\"ws_url\":\"%s\",\"conns\":%llu,\"connects\":%llu,\"failed\":%llu,"
                   "\"dropped\":%llu}", i ? "," : "", n->name, n->url, (unsigned long long)n->ready,
                   (unsigned long long)n->connects, (unsigned long long)n->failed, (unsigned long long)n->dropped);
        }
        printf("]");
    }
    if (p.reconnect) {
        printf(",\"reconnects\":%llu,\"reconnect_failures\":%llu,\"resent\":%llu,\"still_offline\":%llu,"
               "\"offline_s\":%.3f", (unsigned long long)total.reconnects,
               (unsigned long long)total.reconnect_failures, (unsigned long long)total.resent,
               (unsigned long long)total.still_offline, (double)total.offline_ns / 1e9);
        json_hist("offline", &total.h_gap);
    }
    switch (p.scenario) {
    case SC_IDLE:
        printf(",\"connect_per_s\":%.0f,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,\"bytes_per_conn\":%.0f",
               rate_conn, rss0, rss1, mem_per_conn);
        json_hist("connect", &total.h_conn);
        break;
    case SC_DIRECT:
    case SC_GROUP:
        printf(",\"acked_per_s\":%.0f,\"delivered_per_s\":%.0f,\"lost\":%llu,\"dup_or_reorder\":%llu,"
               "\"seq_order_errors\":%llu,\"skipped\":%llu,\"shed\":%llu",
               msgs_s, delivered_s, (unsigned long long)total.missing,
               (unsigned long long)total.dup_or_reorder, (unsigned long long)total.seq_order_errors,
               (unsigned long long)total.behind, (unsigned long long)total.shed);
        json_hist("ack", &total.h_ack);
        json_hist("e2e", &total.h_e2e);
        break;
    case SC_HISTORY:
        printf(",\"pages_per_s\":%.0f,\"limit\":%d,\"page_errors\":%llu", pages_s, p.history_limit,
               (unsigned long long)total.page_errors);
        json_hist("page", &total.h_req);
        break;
    case SC_RESYNC:
        printf(",\"missed\":%d,\"caught_up\":%llu,\"all_caught_up_s\":%.3f,\"catchup_errors\":%llu",
               p.missed, (unsigned long long)total.caught_up, busy_s, (unsigned long long)total.catchup_errors);
        json_hist("reconnect", &total.h_conn);
        json_hist("caught_up", &total.h_catch);
        break;
    }
    printf("}\n");
    free_params(&p);
    return errors ? 3 : 0;
}
