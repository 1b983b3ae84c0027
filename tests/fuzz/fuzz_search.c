/* fuzz_search.c — libFuzzer target for the search rules (model/search.h).
 *
 * Input: byte 0 splits the rest into a query and a text; both are made
 * valid UTF-8 the way the server guarantees it (the query is checked by
 * iy_search_query_check, stored texts were validated at send), then:
 *   - iy_search_find agrees with a plain byte search where case folding
 *     cannot matter (an ASCII query without letters);
 *   - iy_search_snippet matches exactly when find does, its snippet is
 *     valid UTF-8 that fits, every highlight lies inside it, in order,
 *     and spans as many code points as the query;
 *   - iy_search_score is > 0 exactly when there is a match. */
#include "model/search.h"
#include "base/err.h"
#include "base/utf8.h"
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static int has_letter(const char *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)q[i];
        if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t split = (size_t)data[0] % (size < 200 ? size : 200);
    const char *q = (const char *)data + 1, *t = q + split;
    size_t qlen = split > size - 1 ? size - 1 : split, tlen = size - 1 - qlen;
    if (iy_search_query_check(q, qlen) != 0 || iy_utf8_validate(t, tlen) != 0) return 0;

    long at = iy_search_find(t, tlen, q, qlen, 0);
    CHECK(at >= -1 && (at < 0 || (size_t)at + qlen <= tlen));
    if (!has_letter(q, qlen)) {
        const char *m = tlen >= qlen ? memmem(t, tlen, q, qlen) : NULL;
        CHECK(m ? at == m - t : at == -1);
    }
    iy_snippet *sn = malloc(sizeof *sn);
    int ok = iy_search_snippet(t, tlen, q, qlen, sn);
    CHECK(ok == (at >= 0));
    if (ok) {
        CHECK(sn->len < sizeof sn->text && iy_utf8_validate(sn->text, sn->len) == 0);
        size_t cps = iy_utf8_count(sn->text, sn->len), qcp = iy_utf8_count(q, qlen);
        CHECK(sn->nhl >= 1 && sn->nhl <= IY_SNIPPET_HL_MAX);
        for (size_t i = 0; i < sn->nhl; i++) {
            CHECK(sn->hl[i][0] < sn->hl[i][1] && sn->hl[i][1] <= cps);
            CHECK(sn->hl[i][1] - sn->hl[i][0] == qcp);
            CHECK(i == 0 || sn->hl[i][0] >= sn->hl[i - 1][1]);
        }
    } else {
        CHECK(sn->len == 0 && sn->nhl == 0);
    }
    free(sn);
    CHECK((iy_search_score(t, tlen, q, qlen) > 0) == (at >= 0));
    return 0;
}
