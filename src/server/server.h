/* server.h — the whole iyagid process: configuration and the run loop. */
#ifndef IY_SERVER_H
#define IY_SERVER_H
#include <stdint.h>

#define SERVER_MAX_LISTEN 8
#define SERVER_MAX_TRUST 8

typedef struct server_config {
    char listen[SERVER_MAX_LISTEN][256];        /* --listen HOST:PORT, as given (resolved at start) */
    unsigned nlisten;
    char admin_listen[SERVER_MAX_LISTEN][256];  /* --admin-listen */
    unsigned nadmin;
    char listen_host[64];       /* the first --listen's host and port (node name, URLs) */
    int listen_port;
    char data_dir[4096];
    char store[4096];           /* --store URL ("" : the embedded store in data_dir) */
    char node[128];             /* --node NAME ("" : HOST:PORT of --listen) */
    char bus[4096];             /* --bus NATS URLs ("" : a single node) */
    unsigned capacity;          /* --capacity N (0: from the open-file limit) */
    unsigned threads;
    char public_url[512];
    int presence_timeout_s;
    int auth_timeout_s;
    unsigned token_cache;       /* --token-cache N: valid tokens cached (0: none) */
    int idle_timeout_s;
    int push_allow_private;
    int max_backlog;            /* queued sends past which new sends get `unavailable` */
    int max_queue_ms;           /* ... or once the storage queue's oldest job waited this long (0: off) */
    int push_retry_base_ms;     /* first push retry delay */
    int push_give_up_s;         /* age past which a push notification is dead */
    int shutdown_timeout_s;     /* SIGTERM to exit, at most (then the process exits regardless) */
    int rate_limits;            /* 1 (default): chat/limiter.h's limits; 0: --rate-limits off */
    char trust_proxy[SERVER_MAX_TRUST][64];     /* --trust-proxy CIDRs, IPv4 or IPv6 */
    unsigned ntrust;
    unsigned max_conns;         /* --max-connections (0: the capacity) */
    unsigned max_per_addr;      /* --max-conns-per-address (with rate limits on) */
    unsigned max_user_sockets;  /* --max-sockets-per-user (with rate limits on) */
    int request_timeout_s;      /* --request-timeout */
    int keepalive_timeout_s;    /* --keepalive-timeout */
    unsigned min_body_rate;     /* --min-body-rate, bytes/s */
    unsigned max_buffered_mb;   /* --max-request-buffers-mb */
    unsigned min_free_mb;       /* --min-free-mb: the data disk's reserve (embedded store) */
    unsigned cache_mb;          /* --cache-mb: the embedded store's block cache (and memtables) */
    unsigned max_output_mb;     /* --max-output-buffers-mb */
    char blob_dir[4096];        /* --blob-dir ("" : DATA/blobs) */
    unsigned max_upload_mb;     /* --max-upload */
    int log_level;              /* --log-level: enum iy_log_level (default info) */
    int log_format;             /* --log-format: enum iy_log_format (default text) */
    char access_log[4096];      /* --access-log: "off" (default), "stderr" or a file */
    char metrics_token[256];    /* --metrics-token: /metrics wants this bearer token ("" : open) */
    char tls_cert[4096];        /* --tls-cert FILE: HTTPS and WSS on the port ("" : plain) */
    char tls_key[4096];         /* --tls-key FILE (with --tls-cert) */
    char cors_origin[2048];     /* --cors-origin: allowed origins, comma-separated, or "*" ("" : CORS off) */
} server_config;

/* Fills cfg with the defaults (127.0.0.1:8080, ./data, one I/O thread per core). */
void server_config_defaults(server_config *cfg);

/* Opens the store, starts the storage thread and the I/O threads, serves
 * until SIGTERM or SIGINT (SIGHUP reloads the TLS certificate), then stops in order: stop accepting, commit and
 * answer everything queued, close the sockets, close the store; all of it
 * within shutdown_timeout_s, after which the process exits at once.
 * Returns 0 after a clean stop, nonzero if it could not start (logged). */
int server_run(const server_config *cfg);

#endif
