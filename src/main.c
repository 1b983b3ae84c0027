/* main.c — iyagid's command line. */
#include "server/admin.h"
#include "server/server.h"
#include "base/log.h"
#include "store/store.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: iyagid [--listen HOST:PORT] [--data DIR] [--store URL] [--bus URLS] [--node NAME]\n"
            "              [--capacity N] [--threads N] [--public-url URL]\n"
            "              [--presence-timeout S] [--auth-timeout S] [--idle-timeout S] [--max-backlog N]\n"
            "              [--push-allow-private] [--push-retry-base-ms N] [--push-give-up S]\n"
            "              [--shutdown-timeout S] [--rate-limits on|off] [--trust-proxy CIDR]\n"
            "              [--max-connections N] [--max-conns-per-address N] [--max-sockets-per-user N]\n"
            "              [--request-timeout S] [--min-body-rate B] [--max-request-buffers-mb N]\n"
            "              [--min-free-mb N] [--max-output-buffers-mb N] [--blob-dir DIR] [--max-upload MB]\n"
            "              [--cors-origin ORIGIN]...\n"
            "  --listen HOST:PORT     IPv4 address to serve on (default 127.0.0.1:8080)\n"
            "  --data DIR             the embedded store lives here (default ./data, created if missing)\n"
            "  --store URL            keep all shared state in PostgreSQL instead (a libpq URI:\n"
            "                         postgresql://USER@HOST:PORT/DB, multi-host with\n"
            "                         target_session_attrs=read-write); the schema is created or upgraded\n"
            "  --bus URLS             join a cluster: the NATS servers, nats://HOST:PORT[,nats://...]\n"
            "                         (needs --store: the nodes of a cluster share one PostgreSQL)\n"
            "  --node NAME            this node's name, unique in a cluster (default HOST:PORT of --listen)\n"
            "  --capacity N           connections this node is meant to hold, for discovery\n"
            "                         (default: its open-file limit less 1000)\n"
            "  --threads N            I/O threads (default: number of cores)\n"
            "  --public-url URL       base URL that discovery hands to clients (default: the Host header)\n"
            "  --presence-timeout S   seconds of silence before a user is offline (default 30)\n"
            "  --auth-timeout S       seconds a WebSocket may stay unauthenticated (default 10)\n"
            "  --idle-timeout S       seconds of silence before a WebSocket is closed (default 60)\n"
            "  --max-backlog N        queued sends past which new sends get 'unavailable' (default 20000)\n"
            "  --push-allow-private   allow push endpoints on private addresses (tests)\n"
            "  --push-retry-base-ms N first retry delay of a failed push, doubling (default 1000)\n"
            "  --push-give-up S       seconds after which an undelivered push is a dead letter (default 86400)\n"
            "  --shutdown-timeout S   SIGTERM/SIGINT: drain, commit what was accepted, close every socket\n"
            "                         within S seconds, then exit regardless (default 10)\n"
            "  --rate-limits on|off   limits on logins, signups, messages, new chats, typing and\n"
            "                         presence queries per user and per address (default on; off\n"
            "                         for tests and benchmarks driving thousands of users from one address)\n"
            "  --trust-proxy CIDR     requests from this IPv4 network (a load balancer) are counted by the\n"
            "                         client address it appends to X-Forwarded-For (default: none trusted)\n"
            "  --max-connections N    open connections past which new ones are refused at accept\n"
            "                         (default: the capacity, the open-file limit less 1000)\n"
            "  --max-conns-per-address N  connections from one client address (default 512; off with\n"
            "                         --rate-limits off; a --trust-proxy address is exempt)\n"
            "  --max-sockets-per-user N   authenticated WebSockets of one account on this node\n"
            "                         (default 32; off with --rate-limits off)\n"
            "  --request-timeout S    an HTTP request head must arrive within S seconds (default 10) ...\n"
            "  --min-body-rate B      ... and its body at B bytes a second at least (default 16384)\n"
            "  --max-request-buffers-mb N  memory for unfinished requests, all connections together;\n"
            "                         past it big requests get 503 (default 128)\n"
            "  --min-free-mb N        the embedded store refuses writes ('unavailable', /healthz 503)\n"
            "                         while its disk has less than N MB free (default 256; 0: off)\n"
            "  --max-output-buffers-mb N  output queued for all sockets together; past it a socket\n"
            "                         with over 256 KiB queued is dropped as a slow reader (default 256)\n"
            "  --blob-dir DIR         where attachments' bytes live (default DATA/blobs); a cluster's\n"
            "                         nodes must share it (one network file system path)\n"
            "  --max-upload MB        the largest upload (default 25)\n"
            "  --cors-origin ORIGIN   let web pages of ORIGIN (scheme://host[:port]) call the HTTP API:\n"
            "                         repeatable or a comma list; * for any origin (no credentials are\n"
            "                         ever allowed: tokens go in the Authorization header) (default: none,\n"
            "                         CORS off)\n");
}

/* Appends --cors-origin's value (one origin or a comma list) to list;
 * each must be "*" or scheme://host[:port] (what browsers send as Origin). */
static int add_cors_origins(char *list, size_t cap, const char *v)
{
    const char *p = v;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && p[0] == ' ') { p++; n--; }
        while (n && p[n - 1] == ' ') n--;
        int star = n == 1 && p[0] == '*';
        int ok = star || ((n > 7 && strncmp(p, "http://", 7) == 0) || (n > 8 && strncmp(p, "https://", 8) == 0));
        for (size_t i = star ? 1 : 8; ok && i < n; i++)
            if (p[i] == '/' || p[i] == ' ' || p[i] == ',' || (unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e) ok = 0;
        if (!ok) {
            fprintf(stderr, "iyagid: --cors-origin %.*s: an origin is * or scheme://host[:port], without a path\n",
                    (int)n, p);
            return -1;
        }
        size_t have = strlen(list);
        if (have + n + 2 > cap) {
            fprintf(stderr, "iyagid: --cors-origin: too many origins\n");
            return -1;
        }
        snprintf(list + have, cap - have, "%s%.*s", have ? "," : "", (int)n, p);
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* "A.B.C.D/N" (or "A.B.C.D": /32) -> network and mask, host order. */
static int parse_cidr(const char *v, uint32_t *net, uint32_t *mask)
{
    char ip[16];
    const char *slash = strchr(v, '/');
    size_t n = slash ? (size_t)(slash - v) : strlen(v);
    if (n == 0 || n >= sizeof ip) return -1;
    memcpy(ip, v, n);
    ip[n] = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1) return -1;
    long bits = 32;
    if (slash) {
        char *end;
        bits = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || bits < 1 || bits > 32) return -1;
    }
    *mask = bits == 32 ? UINT32_MAX : ~(UINT32_MAX >> bits);
    *net = ntohl(a.s_addr) & *mask;
    return 0;
}

static int int_arg(const char *name, const char *v, int lo, int hi)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "iyagid: %s must be an integer from %d to %d\n", name, lo, hi);
        exit(2);
    }
    return (int)x;
}

int main(int argc, char **argv)
{
    /* Every file iyagid or its admin commands create (the store, keys,
     * backups) is the owner's alone. */
    umask(077);
    if (argc > 1 && !strcmp(argv[1], "admin")) return admin_main(argc - 1, argv + 1);
    server_config cfg;
    server_config_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--push-allow-private")) {
            cfg.push_allow_private = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "iyagid: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--listen")) {
            const char *colon = strrchr(v, ':');
            if (!colon || colon == v || (size_t)(colon - v) >= sizeof cfg.listen_host) {
                fprintf(stderr, "iyagid: --listen takes HOST:PORT\n");
                return 2;
            }
            snprintf(cfg.listen_host, sizeof cfg.listen_host, "%.*s", (int)(colon - v), v);
            cfg.listen_port = int_arg("--listen port", colon + 1, 0, 65535);
        } else if (!strcmp(a, "--data")) {
            snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", v);
        } else if (!strcmp(a, "--store")) {
            if (strlen(v) >= sizeof cfg.store || !store_is_url(v)) {
                fprintf(stderr, "iyagid: --store takes a postgresql:// URL\n");
                return 2;
            }
            snprintf(cfg.store, sizeof cfg.store, "%s", v);
        } else if (!strcmp(a, "--bus")) {
            if (strlen(v) >= sizeof cfg.bus || strncmp(v, "nats://", 7) != 0) {
                fprintf(stderr, "iyagid: --bus takes nats://HOST:PORT[,nats://HOST:PORT...]\n");
                return 2;
            }
            snprintf(cfg.bus, sizeof cfg.bus, "%s", v);
        } else if (!strcmp(a, "--capacity")) {
            cfg.capacity = (unsigned)int_arg(a, v, 1, 10000000);
        } else if (!strcmp(a, "--node")) {
            if (!*v || strlen(v) >= sizeof cfg.node) {
                fprintf(stderr, "iyagid: --node takes a name of 1 to %zu bytes\n", sizeof cfg.node - 1);
                return 2;
            }
            snprintf(cfg.node, sizeof cfg.node, "%s", v);
        } else if (!strcmp(a, "--threads")) {
            cfg.threads = (unsigned)int_arg(a, v, 1, 64);
        } else if (!strcmp(a, "--public-url")) {
            snprintf(cfg.public_url, sizeof cfg.public_url, "%s", v);
        } else if (!strcmp(a, "--presence-timeout")) {
            cfg.presence_timeout_s = int_arg(a, v, 1, 3600);
        } else if (!strcmp(a, "--auth-timeout")) {
            cfg.auth_timeout_s = int_arg(a, v, 1, 3600);
        } else if (!strcmp(a, "--push-retry-base-ms")) {
            cfg.push_retry_base_ms = int_arg(a, v, 1, 3600000);
        } else if (!strcmp(a, "--push-give-up")) {
            cfg.push_give_up_s = int_arg(a, v, 1, 30 * 86400);
        } else if (!strcmp(a, "--max-backlog")) {
            cfg.max_backlog = int_arg(a, v, 1, 10000000);
        } else if (!strcmp(a, "--trust-proxy")) {
            if (parse_cidr(v, &cfg.trust_net, &cfg.trust_mask) != 0) {
                fprintf(stderr, "iyagid: --trust-proxy takes an IPv4 network, A.B.C.D/N (e.g. 127.0.0.1/32)\n");
                return 2;
            }
        } else if (!strcmp(a, "--rate-limits")) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                fprintf(stderr, "iyagid: --rate-limits takes on or off\n");
                return 2;
            }
            cfg.rate_limits = !strcmp(v, "on");
        } else if (!strcmp(a, "--max-connections")) {
            cfg.max_conns = (unsigned)int_arg(a, v, 1, 10000000);
        } else if (!strcmp(a, "--max-conns-per-address")) {
            cfg.max_per_addr = (unsigned)int_arg(a, v, 1, 10000000);
        } else if (!strcmp(a, "--max-sockets-per-user")) {
            cfg.max_user_sockets = (unsigned)int_arg(a, v, 1, 100000);
        } else if (!strcmp(a, "--request-timeout")) {
            cfg.request_timeout_s = int_arg(a, v, 1, 3600);
        } else if (!strcmp(a, "--min-body-rate")) {
            cfg.min_body_rate = (unsigned)int_arg(a, v, 1, 1 << 30);
        } else if (!strcmp(a, "--max-output-buffers-mb")) {
            cfg.max_output_mb = (unsigned)int_arg(a, v, 1, 1 << 20);
        } else if (!strcmp(a, "--blob-dir")) {
            if (strlen(v) >= sizeof cfg.blob_dir - 64) {
                fprintf(stderr, "iyagid: --blob-dir is too long\n");
                return 2;
            }
            snprintf(cfg.blob_dir, sizeof cfg.blob_dir, "%s", v);
        } else if (!strcmp(a, "--cors-origin")) {
            if (add_cors_origins(cfg.cors_origin, sizeof cfg.cors_origin, v) != 0) return 2;
        } else if (!strcmp(a, "--max-upload")) {
            cfg.max_upload_mb = (unsigned)int_arg(a, v, 1, 4096);
        } else if (!strcmp(a, "--min-free-mb")) {
            cfg.min_free_mb = (unsigned)int_arg(a, v, 0, 1 << 24);
        } else if (!strcmp(a, "--max-request-buffers-mb")) {
            cfg.max_buffered_mb = (unsigned)int_arg(a, v, 1, 1 << 20);
        } else if (!strcmp(a, "--shutdown-timeout")) {
            cfg.shutdown_timeout_s = int_arg(a, v, 1, 3600);
        } else if (!strcmp(a, "--idle-timeout")) {
            cfg.idle_timeout_s = int_arg(a, v, 1, 86400);
        } else {
            fprintf(stderr, "iyagid: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (cfg.bus[0] && !cfg.store[0]) {
        fprintf(stderr, "iyagid: --bus needs --store: the nodes of a cluster share one PostgreSQL database\n");
        return 2;
    }
    return server_run(&cfg) == 0 ? 0 : 1;
}
