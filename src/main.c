/* main.c — iyagid's configuration: one table of options, read from a
 * config file (--config FILE, INI parsed by Debian's libinih), then from
 * IYAGI_* environment variables, then from the command line; a later
 * source wins over an earlier one, and a repeatable option (--listen) given
 * by a later source replaces the earlier source's list instead of adding
 * to it. `iyagid check-config` reads them all, validates, and prints what
 * the server would run with. */
#include "server/admin.h"
#include "server/server.h"
#include "base/log.h"
#include "base/version.h"
#include "net/net.h"
#include "store/store.h"
#include <ctype.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum src { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };
static const char *const src_names[] = { "default", "config file", "environment", "command line" };

typedef struct opt {
    const char *name;           /* long name without "--"; the key in the file; IYAGI_NAME */
    const char *arg;            /* its value's name in --help; NULL: a switch (true/false) */
    const char *def;            /* the default, as --help shows it */
    const char *help;           /* may hold '\n' for more lines */
    int repeat;                 /* may be given more than once (a list) */
} opt;

static const opt opts[] = {
    { "config", "FILE", "none", "read options from FILE first (INI: `name = value` per line, the long\n"
      "names below; `#` starts a comment line); IYAGI_CONFIG names it too", 0 },
    { "listen", "HOST:PORT", "127.0.0.1:8080", "address to serve on: an IPv4 address, [IPv6], a host name (all its\n"
      "addresses: localhost is 127.0.0.1 and ::1) or empty for every interface;\n"
      "repeat for several", 1 },
    { "admin-listen", "HOST:PORT", "none", "serve /metrics and /healthz here (a loopback or private address)\n"
      "instead of on --listen, where /metrics then answers 404; repeatable", 1 },
    { "data", "DIR", "./data", "the embedded store lives here (created if missing)", 0 },
    { "store", "URL", "none", "keep all shared state in PostgreSQL instead (a libpq URI:\n"
      "postgresql://USER@HOST:PORT/DB, multi-host with target_session_attrs=read-write);\n"
      "the schema is created or upgraded", 0 },
    { "bus", "URLS", "none", "join a cluster: the NATS servers, nats://HOST:PORT[,nats://...]\n"
      "(needs --store: the nodes of a cluster share one PostgreSQL)", 0 },
    { "node", "NAME", "HOST:PORT of --listen", "this node's name, unique in a cluster", 0 },
    { "capacity", "N", "open-file limit - 1000", "connections this node is meant to hold, for discovery", 0 },
    { "threads", "N", "number of cores", "I/O threads", 0 },
    { "public-url", "URL", "the Host header", "base URL that discovery hands to clients", 0 },
    { "trust-proxy", "CIDR", "none", "requests from this network (a load balancer: IPv4 or IPv6, A.B.C.D/N)\n"
      "are counted by the client address it appends to X-Forwarded-For, and\n"
      "X-Forwarded-Proto: https makes the WebSocket URLs we hand out wss://; repeatable", 1 },
    { "presence-timeout", "S", "30", "seconds of silence before a user is offline", 0 },
    { "auth-timeout", "S", "10", "seconds a WebSocket may stay unauthenticated", 0 },
    { "token-cache", "N", "100000", "valid session tokens kept in memory, so a token check needs\n"
      "no storage round trip (0: ask the store every time)", 0 },
    { "idle-timeout", "S", "60", "seconds of silence before a WebSocket is closed", 0 },
    { "max-backlog", "N", "20000", "queued sends past which new sends get 'unavailable'", 0 },
    { "max-queue-ms", "MS", "1000", "new sends also get 'unavailable' once the oldest job queued for the\n"
      "storage thread has waited MS ms with 512 or more sends queued: overload is\n"
      "shed in time, whatever the commit rate (0: off, only --max-backlog)", 0 },
    { "push-allow-private", NULL, "false", "allow push endpoints on private addresses (tests)", 0 },
    { "push-retry-base-ms", "N", "1000", "first retry delay of a failed push, doubling", 0 },
    { "push-give-up", "S", "86400", "seconds after which an undelivered push is a dead letter", 0 },
    { "shutdown-timeout", "S", "10", "SIGTERM/SIGINT: drain, commit what was accepted, close every socket\n"
      "within S seconds, then exit regardless", 0 },
    { "rate-limits", "on|off", "on", "limits on logins, signups, messages, new chats, typing and presence\n"
      "queries per user and per address (off for tests and benchmarks driving\n"
      "thousands of users from one address)", 0 },
    { "max-connections", "N", "the capacity", "open connections past which new ones are refused at accept", 0 },
    { "max-conns-per-address", "N", "512", "connections from one client address (off with --rate-limits off;\n"
      "a --trust-proxy address is exempt)", 0 },
    { "max-sockets-per-user", "N", "32", "authenticated WebSockets of one account on this node (off with\n"
      "--rate-limits off)", 0 },
    { "request-timeout", "S", "10", "an HTTP request head must arrive within S seconds ...", 0 },
    { "min-body-rate", "B", "16384", "... and its body at B bytes a second at least", 0 },
    { "keepalive-timeout", "S", "30", "an HTTP connection idle for S seconds after its last answer is closed", 0 },
    { "max-request-buffers-mb", "N", "128", "memory for unfinished requests, all connections together; past it\n"
      "big requests get 503", 0 },
    { "min-free-mb", "N", "256", "the embedded store refuses writes ('unavailable', /healthz 503) while\n"
      "its disk has less than N MB free (0: off)", 0 },
    { "cache-mb", "N", "64", "the embedded store's block cache, holding its index and filter blocks\n"
      "too; its memtables take at most N/2 MB more: store memory stays bounded\n"
      "however much history there is", 0 },
    { "max-output-buffers-mb", "N", "256", "output queued for all sockets together; past it a socket with over\n"
      "256 KiB queued is dropped as a slow reader", 0 },
    { "blob-dir", "DIR", "DATA/blobs", "where attachments' bytes live; a cluster's nodes must share it", 0 },
    { "max-upload", "MB", "25", "the largest upload", 0 },
    { "log-level", "L", "info", "error, warn, info or debug: log lines past it are dropped", 0 },
    { "log-format", "text|json", "text", "text (a UTC timestamp, the level, the message) or json (one object\n"
      "per line: ts, level, msg)", 0 },
    { "access-log", "WHERE", "off", "off, stderr or a FILE appended to: one line per HTTP request (client,\n"
      "method, route template, status, bytes, microseconds) and per WebSocket\n"
      "open and close; SIGHUP reopens FILE (log rotation)", 0 },
    { "metrics-token", "TOKEN", "none", "GET /metrics wants Authorization: Bearer TOKEN (16 bytes or more),\n"
      "else 401; give it in the config file or IYAGI_METRICS_TOKEN (ps shows\n"
      "a command line)", 0 },
    { "tls-cert", "FILE", "none", "speak HTTPS and WSS on the --listen addresses (--admin-listen stays\n"
      "plain): FILE is the PEM certificate chain, leaf first; SIGHUP reloads it\n"
      "and the key for new connections", 0 },
    { "tls-key", "FILE", "none", "the PEM private key of --tls-cert", 0 },
    { "cors-origin", "ORIGIN", "none", "let web pages of ORIGIN (scheme://host[:port], or * for any) call the\n"
      "HTTP API from a browser (CORS; credentials are never allowed: tokens go in\n"
      "the Authorization header); repeatable, or a comma list", 1 },
};
#define NOPT (sizeof opts / sizeof opts[0])

/* What was given, for check-config. */
static enum src given_src[NOPT];
static char given_val[NOPT][512];

static void usage(FILE *f)
{
    fprintf(f, "usage: iyagid [OPTION VALUE | --OPTION=VALUE]...     serve\n"
               "       iyagid check-config [OPTION VALUE]...           validate, print the result, exit\n"
               "       iyagid admin COMMAND ...                        administration (iyagid admin --help)\n"
               "       iyagid --version | --help\n\n"
               "Every option may also come from the environment (IYAGI_ and its name in upper case\n"
               "with '-' as '_': IYAGI_LISTEN=0.0.0.0:8080) and from the --config file; the command\n"
               "line wins over the environment, which wins over the file.\n\n");
    for (size_t i = 0; i < NOPT; i++) {
        char head[64];
        snprintf(head, sizeof head, "--%s%s%s", opts[i].name, opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-28s", head);
        const char *h = opts[i].help;
        for (;;) {
            const char *nl = strchr(h, '\n');
            fprintf(f, "%.*s\n", nl ? (int)(nl - h) : (int)strlen(h), h);
            if (!nl) break;
            h = nl + 1;
            fprintf(f, "  %-28s", "");
        }
        fprintf(f, "  %-28s(default: %s)\n", "", opts[i].def);
    }
}

static int find_opt(const char *name)
{
    for (size_t i = 0; i < NOPT; i++)
        if (!strcmp(opts[i].name, name)) return (int)i;
    return -1;
}

static int int_val(const char *v, long lo, long hi, long *out, char *err, size_t cap)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        snprintf(err, cap, "must be an integer from %ld to %ld", lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int bool_val(const char *v, int *out)
{
    static const char *const yes[] = { "1", "true", "yes", "on" }, *const no[] = { "0", "false", "no", "off" };
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = 1, 0;
        if (!strcasecmp(v, no[i])) return *out = 0, 0;
    }
    return -1;
}

static int copy_str(char *dst, size_t cap, const char *v, char *err, size_t ecap)
{
    if (strlen(v) >= cap) {
        snprintf(err, ecap, "is longer than %zu bytes", cap - 1);
        return -1;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* Appends --cors-origin's value (one origin or a comma list) to list; each
 * must be "*" or scheme://host[:port] (what browsers send as Origin). 0, or
 * -1 with why in err. */
static int add_cors_origins(char *list, size_t cap, const char *v, char *err, size_t errcap)
{
    const char *p = v;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && p[0] == ' ') p++, n--;
        while (n && p[n - 1] == ' ') n--;
        int star = n == 1 && p[0] == '*';
        int ok = star || (n > 7 && strncmp(p, "http://", 7) == 0) || (n > 8 && strncmp(p, "https://", 8) == 0);
        for (size_t i = star ? 1 : 8; ok && i < n; i++)
            if (p[i] == '/' || (unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e) ok = 0;
        if (!ok) {
            snprintf(err, errcap, "takes * or scheme://host[:port] without a path (not %.*s)", (int)(n < 200 ? n : 200), p);
            return -1;
        }
        size_t have = strlen(list);
        if (have + n + 2 > cap) return snprintf(err, errcap, "has too many origins"), -1;
        snprintf(list + have, cap - have, "%s%.*s", have ? "," : "", (int)n, p);
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Sets option i from v (src: which source, for lists and check-config).
 * 0, or -1 with why in err. */
static int apply(server_config *cfg, int i, const char *v, enum src src, char *err, size_t cap)
{
    const char *n = opts[i].name;
    long x = 0;
    int b;
    if (opts[i].repeat && given_src[i] != src) {
        /* A later source's list replaces the earlier one's. */
        if (!strcmp(n, "listen")) cfg->nlisten = 0;
        else if (!strcmp(n, "admin-listen")) cfg->nadmin = 0;
        else if (!strcmp(n, "trust-proxy")) cfg->ntrust = 0;
        else if (!strcmp(n, "cors-origin")) cfg->cors_origin[0] = '\0';
        given_val[i][0] = '\0';
    }
#define INT(lo, hi) if (int_val(v, lo, hi, &x, err, cap) != 0) return -1
    if (!strcmp(n, "config")) {
        return 0; /* read before everything else */
    } else if (!strcmp(n, "listen") || !strcmp(n, "admin-listen")) {
        char host[256];
        int port;
        if (net_split_hostport(v, host, sizeof host, &port) != 0) {
            snprintf(err, cap, "takes HOST:PORT or [IPV6]:PORT (e.g. 127.0.0.1:8080, [::1]:8080, localhost:8080, :8080)");
            return -1;
        }
        int admin = n[0] == 'a';
        unsigned *cnt = admin ? &cfg->nadmin : &cfg->nlisten;
        char(*list)[256] = admin ? cfg->admin_listen : cfg->listen;
        if (*cnt == SERVER_MAX_LISTEN) {
            snprintf(err, cap, "is given more than %d times", SERVER_MAX_LISTEN);
            return -1;
        }
        if (copy_str(list[*cnt], sizeof list[0], v, err, cap) != 0) return -1;
        (*cnt)++;
        if (!admin && cfg->nlisten == 1) {
            snprintf(cfg->listen_host, sizeof cfg->listen_host, "%.*s", (int)sizeof cfg->listen_host - 1, host);
            cfg->listen_port = port;
        }
    } else if (!strcmp(n, "trust-proxy")) {
        net_cidr c;
        if (net_parse_cidr(v, &c) != 0) {
            snprintf(err, cap, "takes a network, A.B.C.D/N or IPV6/N (e.g. 127.0.0.1/32, ::1/128)");
            return -1;
        }
        if (cfg->ntrust == SERVER_MAX_TRUST) {
            snprintf(err, cap, "is given more than %d times", SERVER_MAX_TRUST);
            return -1;
        }
        if (copy_str(cfg->trust_proxy[cfg->ntrust], sizeof cfg->trust_proxy[0], v, err, cap) != 0) return -1;
        cfg->ntrust++;
    } else if (!strcmp(n, "data")) {
        if (!*v) return snprintf(err, cap, "must not be empty"), -1;
        if (copy_str(cfg->data_dir, sizeof cfg->data_dir, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "store")) {
        if (*v && !store_is_url(v)) return snprintf(err, cap, "takes a postgresql:// URL"), -1;
        if (copy_str(cfg->store, sizeof cfg->store, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "bus")) {
        if (*v && strncmp(v, "nats://", 7) != 0)
            return snprintf(err, cap, "takes nats://HOST:PORT[,nats://HOST:PORT...]"), -1;
        if (copy_str(cfg->bus, sizeof cfg->bus, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "node")) {
        if (!*v) return snprintf(err, cap, "must not be empty"), -1;
        if (copy_str(cfg->node, sizeof cfg->node, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "public-url")) {
        if (*v && strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
            return snprintf(err, cap, "takes an http:// or https:// URL"), -1;
        if (copy_str(cfg->public_url, sizeof cfg->public_url, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "blob-dir")) {
        if (strlen(v) >= sizeof cfg->blob_dir - 64) return snprintf(err, cap, "is too long"), -1;
        if (copy_str(cfg->blob_dir, sizeof cfg->blob_dir, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "push-allow-private")) {
        if (bool_val(v, &b) != 0) return snprintf(err, cap, "takes true or false"), -1;
        cfg->push_allow_private = b;
    } else if (!strcmp(n, "rate-limits")) {
        if (strcmp(v, "on") && strcmp(v, "off")) return snprintf(err, cap, "takes on or off"), -1;
        cfg->rate_limits = !strcmp(v, "on");
    } else if (!strcmp(n, "capacity")) {
        INT(1, 10000000);
        cfg->capacity = (unsigned)x;
    } else if (!strcmp(n, "threads")) {
        INT(1, 64);
        cfg->threads = (unsigned)x;
    } else if (!strcmp(n, "presence-timeout")) {
        INT(1, 3600);
        cfg->presence_timeout_s = (int)x;
    } else if (!strcmp(n, "token-cache")) {
        INT(0, 100000000);
        cfg->token_cache = (unsigned)x;
    } else if (!strcmp(n, "auth-timeout")) {
        INT(1, 3600);
        cfg->auth_timeout_s = (int)x;
    } else if (!strcmp(n, "idle-timeout")) {
        INT(1, 86400);
        cfg->idle_timeout_s = (int)x;
    } else if (!strcmp(n, "max-backlog")) {
        INT(1, 10000000);
        cfg->max_backlog = (int)x;
    } else if (!strcmp(n, "max-queue-ms")) {
        INT(0, 3600000);
        cfg->max_queue_ms = (int)x;
    } else if (!strcmp(n, "push-retry-base-ms")) {
        INT(1, 3600000);
        cfg->push_retry_base_ms = (int)x;
    } else if (!strcmp(n, "push-give-up")) {
        INT(1, 30 * 86400);
        cfg->push_give_up_s = (int)x;
    } else if (!strcmp(n, "shutdown-timeout")) {
        INT(1, 3600);
        cfg->shutdown_timeout_s = (int)x;
    } else if (!strcmp(n, "max-connections")) {
        INT(1, 10000000);
        cfg->max_conns = (unsigned)x;
    } else if (!strcmp(n, "max-conns-per-address")) {
        INT(1, 10000000);
        cfg->max_per_addr = (unsigned)x;
    } else if (!strcmp(n, "max-sockets-per-user")) {
        INT(1, 100000);
        cfg->max_user_sockets = (unsigned)x;
    } else if (!strcmp(n, "request-timeout")) {
        INT(1, 3600);
        cfg->request_timeout_s = (int)x;
    } else if (!strcmp(n, "keepalive-timeout")) {
        INT(1, 3600);
        cfg->keepalive_timeout_s = (int)x;
    } else if (!strcmp(n, "min-body-rate")) {
        INT(1, 1 << 30);
        cfg->min_body_rate = (unsigned)x;
    } else if (!strcmp(n, "max-request-buffers-mb")) {
        INT(1, 1 << 20);
        cfg->max_buffered_mb = (unsigned)x;
    } else if (!strcmp(n, "min-free-mb")) {
        INT(0, 1 << 24);
        cfg->min_free_mb = (unsigned)x;
    } else if (!strcmp(n, "cache-mb")) {
        INT(8, 1 << 20);
        cfg->cache_mb = (unsigned)x;
    } else if (!strcmp(n, "max-output-buffers-mb")) {
        INT(1, 1 << 20);
        cfg->max_output_mb = (unsigned)x;
    } else if (!strcmp(n, "cors-origin")) {
        if (add_cors_origins(cfg->cors_origin, sizeof cfg->cors_origin, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "max-upload")) {
        INT(1, 4096);
        cfg->max_upload_mb = (unsigned)x;
    } else if (!strcmp(n, "log-level")) {
        if (iy_log_level_parse(v, &cfg->log_level) != 0) return snprintf(err, cap, "takes error, warn, info or debug"), -1;
    } else if (!strcmp(n, "log-format")) {
        if (iy_log_format_parse(v, &cfg->log_format) != 0) return snprintf(err, cap, "takes text or json"), -1;
    } else if (!strcmp(n, "access-log")) {
        if (!*v) return snprintf(err, cap, "takes off, stderr or a file path"), -1;
        if (copy_str(cfg->access_log, sizeof cfg->access_log, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "metrics-token")) {
        if (*v && strlen(v) < 16) return snprintf(err, cap, "takes 16 to %zu bytes", sizeof cfg->metrics_token - 1), -1;
        if (copy_str(cfg->metrics_token, sizeof cfg->metrics_token, v, err, cap) != 0) return -1;
        v = *v ? "(set, not shown)" : "";   /* check-config prints what was given */
    } else if (!strcmp(n, "tls-cert")) {
        if (copy_str(cfg->tls_cert, sizeof cfg->tls_cert, v, err, cap) != 0) return -1;
    } else if (!strcmp(n, "tls-key")) {
        if (copy_str(cfg->tls_key, sizeof cfg->tls_key, v, err, cap) != 0) return -1;
    } else {
        snprintf(err, cap, "has no handler (a bug)");
        return -1;
    }
#undef INT
    given_src[i] = src;
    size_t have = opts[i].repeat ? strlen(given_val[i]) : 0;
    snprintf(given_val[i] + have, sizeof given_val[i] - have, "%s%s", have && opts[i].repeat ? ", " : "", v);
    return 0;
}

/* ---- sources ---- */

typedef struct file_ctx {
    server_config *cfg;
    const char *path;
    char err[512];
} file_ctx;

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    file_ctx *f = user;
    char why[256];
    if (section[0]) {
        snprintf(f->err, sizeof f->err, "sections ([%s]) are not used: write `name = value` lines only", section);
        return 0;
    }
    int i = find_opt(name);
    if (i < 0 || !strcmp(name, "config")) {
        snprintf(f->err, sizeof f->err, "unknown option '%s' (iyagid --help lists them)", name);
        return 0;
    }
    if (apply(f->cfg, i, value, SRC_FILE, why, sizeof why) != 0) {
        snprintf(f->err, sizeof f->err, "%s %s", name, why);
        return 0;
    }
    return 1;
}

/* The whole file, checked for lines libinih would cut (it reads at most
 * 200 bytes a line), then parsed. 0, or -1 (said on stderr). */
static int read_file(server_config *cfg, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "iyagid: --config %s: cannot open: %m\n", path);
        return -1;
    }
    char *text = NULL;
    size_t cap = 0, len = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *t = realloc(text, cap);
            if (!t || cap > (1u << 20)) {
                free(t ? t : text);
                fclose(fp);
                fprintf(stderr, "iyagid: --config %s: too big (1 MB at most)\n", path);
                return -1;
            }
            text = t;
        }
        memcpy(text + len, chunk, n);
        len += n;
    }
    fclose(fp);
    if (!text) text = calloc(1, 1);
    text[len] = '\0';
    int line = 1;
    for (const char *p = text, *nl; *p; p = nl + 1, line++) {
        nl = strchr(p, '\n');
        if (!nl) nl = p + strlen(p) - 1;
        if (nl - p >= 199) {
            fprintf(stderr, "iyagid: --config %s:%d: a line is at most 198 bytes\n", path, line);
            free(text);
            return -1;
        }
    }
    file_ctx f = { cfg, path, "" };
    int rc = ini_parse_string(text, on_ini, &f);
    free(text);
    if (rc != 0) {
        if (rc > 0 && f.err[0]) fprintf(stderr, "iyagid: %s:%d: %s\n", path, rc, f.err);
        else fprintf(stderr, "iyagid: --config %s:%d: not `name = value`\n", path, rc);
        return -1;
    }
    return 0;
}

static int read_env(server_config *cfg)
{
    for (size_t i = 0; i < NOPT; i++) {
        char var[64] = "IYAGI_";
        size_t k = 6;
        for (const char *p = opts[i].name; *p && k + 1 < sizeof var; p++) var[k++] = *p == '-' ? '_' : (char)toupper(*p);
        var[k] = '\0';
        const char *v = getenv(var);
        if (!v || !strcmp(opts[i].name, "config")) continue;
        char why[256];
        /* A repeatable option takes a list in one variable: commas or blanks. */
        char buf[4096];
        if (opts[i].repeat && strlen(v) < sizeof buf) {
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
                if (apply(cfg, (int)i, tok, SRC_ENV, why, sizeof why) != 0) goto bad;
            continue;
        }
        if (apply(cfg, (int)i, v, SRC_ENV, why, sizeof why) == 0) continue;
    bad:
        fprintf(stderr, "iyagid: %s %s\n", var, why);
        return -1;
    }
    return 0;
}

/* argv from `from`: --name value, --name=value, and switches alone. */
static int read_args(server_config *cfg, int argc, char **argv, int from)
{
    for (int a = from; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "iyagid: unexpected argument '%s' (iyagid --help)\n", arg);
            return -1;
        }
        char name[64];
        const char *eq = strchr(arg, '='), *v;
        size_t nl = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        snprintf(name, sizeof name, "%.*s", (int)nl, arg + 2);
        int i = find_opt(name);
        if (i < 0) {
            fprintf(stderr, "iyagid: unknown option %s (iyagid --help lists them)\n", arg);
            return -1;
        }
        if (eq) v = eq + 1;
        else if (!opts[i].arg) v = "true";
        else if (a + 1 < argc) v = argv[++a];
        else {
            fprintf(stderr, "iyagid: --%s needs a value (%s)\n", name, opts[i].arg);
            return -1;
        }
        char why[256];
        if (apply(cfg, i, v, SRC_FLAG, why, sizeof why) != 0) {
            fprintf(stderr, "iyagid: --%s %s\n", name, why);
            return -1;
        }
    }
    return 0;
}

/* --config FILE from the command line, else IYAGI_CONFIG; NULL: none. */
static const char *config_path(int argc, char **argv, int from)
{
    const char *path = getenv("IYAGI_CONFIG");
    for (int a = from; a < argc; a++) {
        if (!strcmp(argv[a], "--config") && a + 1 < argc) path = argv[++a];
        else if (!strncmp(argv[a], "--config=", 9)) path = argv[a] + 9;
    }
    return path && *path ? path : NULL;
}

/* Checks across options and the addresses (resolved now: a name that does
 * not resolve fails here, not later in a thread). 0, or -1. */
static int validate(const server_config *cfg)
{
    if (cfg->bus[0] && !cfg->store[0]) {
        fprintf(stderr, "iyagid: --bus needs --store: the nodes of a cluster share one PostgreSQL database\n");
        return -1;
    }
    if (!cfg->tls_cert[0] != !cfg->tls_key[0]) {
        fprintf(stderr, "iyagid: --tls-cert and --tls-key go together (the certificate chain and its key)\n");
        return -1;
    }
    net_config probe;
    memset(&probe, 0, sizeof probe);
    char err[512];
    for (unsigned i = 0; i < cfg->nlisten + cfg->nadmin; i++) {
        int admin = i >= cfg->nlisten;
        const char *l = admin ? cfg->admin_listen[i - cfg->nlisten] : cfg->listen[i];
        if (net_add_listen(&probe, l, admin, err, sizeof err) != 0) {
            fprintf(stderr, "iyagid: --%slisten %s\n", admin ? "admin-" : "", err);
            return -1;
        }
    }
    return 0;
}

static void print_config(void)
{
    printf("# the configuration iyagid would run with (name = value  # where it came from)\n");
    for (size_t i = 0; i < NOPT; i++) {
        if (!strcmp(opts[i].name, "config")) continue;
        if (given_src[i] == SRC_DEFAULT) printf("# %s = %s  # default\n", opts[i].name, opts[i].def);
        else printf("%s = %s  # %s\n", opts[i].name, given_val[i], src_names[given_src[i]]);
    }
}

int main(int argc, char **argv)
{
    /* Every file iyagid or its admin commands create (the store, keys,
     * backups) is the owner's alone. */
    umask(077);
    if (argc > 1 && !strcmp(argv[1], "admin")) return admin_main(argc - 1, argv + 1);
    int check = argc > 1 && !strcmp(argv[1], "check-config");
    int from = check ? 2 : 1;
    for (int a = from; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[a], "--version") || !strcmp(argv[a], "-V")) {
            printf("iyagid %s (commit %s, built %s)\n", IYAGI_VERSION, IYAGI_COMMIT, __DATE__);
            return 0;
        }
    }
    server_config cfg;
    server_config_defaults(&cfg);
    const char *path = config_path(argc, argv, from);
    if (path) {
        if (read_file(&cfg, path) != 0) return 2;
        int ci = find_opt("config");
        given_src[ci] = getenv("IYAGI_CONFIG") && !strcmp(getenv("IYAGI_CONFIG"), path) ? SRC_ENV : SRC_FLAG;
        snprintf(given_val[ci], sizeof given_val[ci], "%s", path);
    }
    if (read_env(&cfg) != 0 || read_args(&cfg, argc, argv, from) != 0) return 2;
    if (cfg.nlisten == 0) {
        char why[256];
        apply(&cfg, find_opt("listen"), "127.0.0.1:8080", SRC_DEFAULT, why, sizeof why);
    }
    if (validate(&cfg) != 0) return 2;
    if (check) {
        print_config();
        printf("# configuration OK\n");
        return 0;
    }
    return server_run(&cfg) == 0 ? 0 : 1;
}
