/* addr.c — the addresses the transport serves on and the networks it
 * trusts: "HOST:PORT" and "[IPV6]:PORT" resolved with getaddrinfo (so
 * `localhost:8080` serves 127.0.0.1 and ::1), CIDRs of either family. */
#include "net.h"
#include "../base/err.h"
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int net_split_hostport(const char *text, char *host, size_t hostcap, int *port)
{
    const char *p;
    size_t hn;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') return IY_EINVAL;
        hn = (size_t)(close - text - 1);
        if (hn == 0) return IY_EINVAL;
        p = close + 2;
        text++;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || memchr(text, ':', (size_t)(colon - text))) return IY_EINVAL; /* bare IPv6: needs [] */
        hn = (size_t)(colon - text);
        p = colon + 1;
    }
    if (hn >= hostcap) return IY_EINVAL;
    char *end;
    long v = strtol(p, &end, 10);
    if (!*p || *end || v < 0 || v > 65535) return IY_EINVAL;
    memcpy(host, text, hn);
    host[hn] = '\0';
    *port = (int)v;
    return 0;
}

static void sa_text(const struct sockaddr *sa, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof a);
        snprintf(out, cap, "%s:%u", a, ntohs(s4->sin_port));
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof a);
        snprintf(out, cap, "[%s]:%u", a, ntohs(s6->sin6_port));
    }
}

int net_add_listen(net_config *cfg, const char *hostport, int admin, char *err, size_t errcap)
{
    char host[256];
    int port;
    if (net_split_hostport(hostport, host, sizeof host, &port) != 0) {
        snprintf(err, errcap, "%s is not HOST:PORT or [IPV6]:PORT", hostport);
        return IY_EINVAL;
    }
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host[0] ? host : NULL, ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errcap, "cannot resolve %s: %s", host, gai_strerror(rc));
        return IY_EINVAL;
    }
    int added = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        if (ai->ai_addrlen > sizeof(struct sockaddr_storage)) continue;
        int dup = 0;
        for (unsigned i = 0; i < cfg->nlisten && !dup; i++)
            dup = cfg->listen[i].len == ai->ai_addrlen && !memcmp(&cfg->listen[i].sa, ai->ai_addr, ai->ai_addrlen);
        if (dup) {
            for (unsigned i = 0; i < cfg->nlisten; i++) {
                if (cfg->listen[i].len != ai->ai_addrlen || memcmp(&cfg->listen[i].sa, ai->ai_addr, ai->ai_addrlen)) continue;
                if (cfg->listen[i].admin != admin) {
                    snprintf(err, errcap, "%s is both a --listen and an --admin-listen address", cfg->listen[i].text);
                    freeaddrinfo(res);
                    return IY_EINVAL;
                }
            }
            added = 1;
            continue;
        }
        if (cfg->nlisten == NET_MAX_LISTEN) {
            freeaddrinfo(res);
            snprintf(err, errcap, "more than %d addresses to listen on", NET_MAX_LISTEN);
            return IY_EINVAL;
        }
        net_listen *l = &cfg->listen[cfg->nlisten++];
        memset(l, 0, sizeof *l);
        memcpy(&l->sa, ai->ai_addr, ai->ai_addrlen);
        l->len = ai->ai_addrlen;
        l->admin = admin;
        sa_text(ai->ai_addr, l->text, sizeof l->text);
        added = 1;
    }
    freeaddrinfo(res);
    if (!added) {
        snprintf(err, errcap, "%s names no IPv4 or IPv6 address", host);
        return IY_EINVAL;
    }
    return 0;
}

int net_parse_cidr(const char *text, net_cidr *out)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (n == 0 || n >= sizeof ip) return IY_EINVAL;
    memcpy(ip, text, n);
    ip[n] = '\0';
    memset(out, 0, sizeof *out);
    int max;
    if (inet_pton(AF_INET, ip, out->addr) == 1) out->family = AF_INET, max = 32;
    else if (inet_pton(AF_INET6, ip, out->addr) == 1) out->family = AF_INET6, max = 128;
    else return IY_EINVAL;
    long bits = max;
    if (slash) {
        char *end;
        bits = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || bits < 1 || bits > max) return IY_EINVAL;
    }
    out->bits = (int)bits;
    for (int i = 0; i < 16; i++) {
        int keep = out->bits - i * 8;
        out->addr[i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
    }
    return 0;
}

static int prefix_match(const uint8_t *a, const uint8_t *net, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)whole) != 0) return 0;
    return !rest || (a[whole] & (uint8_t)(0xff << (8 - rest))) == net[whole];
}

int net_cidr_match(const net_cidr *v, unsigned n, const struct sockaddr *sa)
{
    const uint8_t *a4 = NULL, *a6 = NULL;
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (sa->sa_family == AF_INET) {
        a4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (!memcmp(a6, mapped, sizeof mapped)) a4 = a6 + 12;    /* ::ffff:a.b.c.d */
    } else {
        return 0;
    }
    for (unsigned i = 0; i < n; i++) {
        if (v[i].family == AF_INET && a4 && prefix_match(a4, v[i].addr, v[i].bits)) return 1;
        if (v[i].family == AF_INET6 && a6 && prefix_match(a6, v[i].addr, v[i].bits)) return 1;
    }
    return 0;
}

void net_url_host(const char *host, int port, char *out, size_t cap)
{
    if (!host[0] || !strcmp(host, "0.0.0.0")) host = "127.0.0.1";
    else if (!strcmp(host, "::")) host = "::1";
    if (strchr(host, ':')) snprintf(out, cap, "[%s]:%d", host, port);
    else snprintf(out, cap, "%s:%d", host, port);
}
