/* test_addr.c — the transport's address rules (src/net/addr.c): HOST:PORT
 * and [IPV6]:PORT, CIDRs of both families and matching against them (IPv4
 * seen as IPv4-mapped IPv6 too), the listener list, URL authorities. */
#include "t.h"
#include "net/net.h"
#include <arpa/inet.h>
#include <netinet/in.h>

static int split(const char *text, const char *host, int port)
{
    char h[64];
    int p = -1;
    if (net_split_hostport(text, h, sizeof h, &p) != 0) return host == NULL;
    return host && !strcmp(h, host) && p == port;
}

static void test_split(void)
{
    CHECK(split("127.0.0.1:8080", "127.0.0.1", 8080));
    CHECK(split("[::1]:8080", "::1", 8080));
    CHECK(split("localhost:0", "localhost", 0));
    CHECK(split(":8080", "", 8080));
    CHECK(split("[fe80::1%lo]:1", "fe80::1%lo", 1));
    CHECK(split("127.0.0.1", NULL, 0));
    CHECK(split("::1:8080", NULL, 0));          /* bare IPv6 is ambiguous: brackets needed */
    CHECK(split("[::1]8080", NULL, 0));
    CHECK(split("[]:8080", NULL, 0));
    CHECK(split("host:65536", NULL, 0));
    CHECK(split("host:-1", NULL, 0));
    CHECK(split("host:", NULL, 0));
    CHECK(split("host:80x", NULL, 0));
    char small[4];
    int p;
    CHECK(net_split_hostport("abcd:1", small, sizeof small, &p) != 0);   /* too long for the buffer */
}

static struct sockaddr_storage v4(const char *a)
{
    struct sockaddr_storage ss = { 0 };
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    inet_pton(AF_INET, a, &s->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *a)
{
    struct sockaddr_storage ss = { 0 };
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    inet_pton(AF_INET6, a, &s->sin6_addr);
    return ss;
}

static int in(const char *cidr, struct sockaddr_storage ss)
{
    net_cidr c;
    if (net_parse_cidr(cidr, &c) != 0) return -1;
    return net_cidr_match(&c, 1, (struct sockaddr *)&ss);
}

static void test_cidr(void)
{
    net_cidr c;
    CHECK(net_parse_cidr("10.0.0.0/8", &c) == 0 && c.family == AF_INET && c.bits == 8);
    CHECK(net_parse_cidr("10.1.2.3/8", &c) == 0 && c.addr[1] == 0);       /* masked */
    CHECK(net_parse_cidr("::1", &c) == 0 && c.family == AF_INET6 && c.bits == 128);
    CHECK(net_parse_cidr("2001:db8::/32", &c) == 0 && c.bits == 32);
    CHECK(net_parse_cidr("10.0.0.0/33", &c) != 0);
    CHECK(net_parse_cidr("10.0.0.0/0", &c) != 0);
    CHECK(net_parse_cidr("10.0.0.0/", &c) != 0);
    CHECK(net_parse_cidr("::/129", &c) != 0);
    CHECK(net_parse_cidr("example.org/8", &c) != 0);
    CHECK(net_parse_cidr("", &c) != 0);
    CHECK(net_parse_cidr("/8", &c) != 0);

    CHECK_EQ(in("127.0.0.1/32", v4("127.0.0.1")), 1);
    CHECK_EQ(in("127.0.0.1/32", v4("127.0.0.2")), 0);
    CHECK_EQ(in("10.0.0.0/8", v4("10.255.1.1")), 1);
    CHECK_EQ(in("10.0.0.0/8", v4("11.0.0.1")), 0);
    CHECK_EQ(in("192.168.4.0/22", v4("192.168.7.255")), 1);
    CHECK_EQ(in("192.168.4.0/22", v4("192.168.8.0")), 0);
    CHECK_EQ(in("::1/128", v6("::1")), 1);
    CHECK_EQ(in("::1/128", v6("::2")), 0);
    CHECK_EQ(in("2001:db8::/32", v6("2001:db8:ffff::1")), 1);
    CHECK_EQ(in("2001:db8::/33", v6("2001:db8:8000::1")), 0);
    CHECK_EQ(in("10.0.0.0/8", v6("::ffff:10.1.2.3")), 1);      /* IPv4-mapped: an IPv4 peer on a v6 socket */
    CHECK_EQ(in("10.0.0.0/8", v6("2001:db8::10.1.2.3")), 0);
    CHECK_EQ(in("::1/128", v4("127.0.0.1")), 0);                /* families do not mix */
    net_cidr two[2];
    net_parse_cidr("10.0.0.0/8", &two[0]);
    net_parse_cidr("fd00::/8", &two[1]);
    struct sockaddr_storage a = v6("fd12::1"), b = v4("172.16.0.1");
    CHECK_EQ(net_cidr_match(two, 2, (struct sockaddr *)&a), 1);
    CHECK_EQ(net_cidr_match(two, 2, (struct sockaddr *)&b), 0);
    CHECK_EQ(net_cidr_match(two, 0, (struct sockaddr *)&a), 0);
}

static void test_listen(void)
{
    net_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[256];
    CHECK(net_add_listen(&cfg, "127.0.0.1:8080", 0, err, sizeof err) == 0);
    CHECK(net_add_listen(&cfg, "[::1]:8080", 0, err, sizeof err) == 0);
    CHECK(net_add_listen(&cfg, "127.0.0.1:8080", 0, err, sizeof err) == 0);   /* again: once */
    CHECK_EQ(cfg.nlisten, 2);
    CHECK(!strcmp(cfg.listen[0].text, "127.0.0.1:8080"));
    CHECK(!strcmp(cfg.listen[1].text, "[::1]:8080"));
    CHECK(net_add_listen(&cfg, "127.0.0.1:9090", 1, err, sizeof err) == 0 && cfg.listen[2].admin == 1);
    CHECK(net_add_listen(&cfg, "127.0.0.1:8080", 1, err, sizeof err) != 0 && strstr(err, "both"));
    CHECK(net_add_listen(&cfg, "nonsense", 0, err, sizeof err) != 0 && strstr(err, "HOST:PORT"));
    CHECK(net_add_listen(&cfg, "name.invalid:1", 0, err, sizeof err) != 0 && strstr(err, "cannot resolve"));
    memset(&cfg, 0, sizeof cfg);
    int full = 0;
    for (int i = 0; i < NET_MAX_LISTEN + 1; i++) {
        char a[32];
        snprintf(a, sizeof a, "127.0.0.1:%d", 1000 + i);
        if (net_add_listen(&cfg, a, 0, err, sizeof err) != 0) full = 1;
    }
    CHECK(full && cfg.nlisten == NET_MAX_LISTEN);
}

static void test_url_host(void)
{
    char o[64];
    net_url_host("127.0.0.1", 80, o, sizeof o);
    CHECK(!strcmp(o, "127.0.0.1:80"));
    net_url_host("::1", 80, o, sizeof o);
    CHECK(!strcmp(o, "[::1]:80"));
    net_url_host("", 80, o, sizeof o);
    CHECK(!strcmp(o, "127.0.0.1:80"));
    net_url_host("0.0.0.0", 80, o, sizeof o);
    CHECK(!strcmp(o, "127.0.0.1:80"));
    net_url_host("::", 80, o, sizeof o);
    CHECK(!strcmp(o, "[::1]:80"));
    net_url_host("chat.example.org", 443, o, sizeof o);
    CHECK(!strcmp(o, "chat.example.org:443"));
}

int main(void)
{
    test_split();
    test_cidr();
    test_listen();
    test_url_host();
    return T_DONE("addr");
}
