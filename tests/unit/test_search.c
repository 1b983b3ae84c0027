/* test_search.c — the search rules (model/search.h): what a query may be,
 * what matches (substring, Latin/Greek/Cyrillic case folded, Korean and
 * emoji as they are), and the snippet: its window, its "…" and its
 * highlights in code points. */
#include <string.h>
#include "t.h"
#include "base/err.h"
#include "model/search.h"

#define Q(s) (s), strlen(s)

static void test_query(void)
{
    CHECK_EQ(iy_search_query_check(Q("hi")), 0);
    CHECK_EQ(iy_search_query_check(Q("안녕")), 0);
    CHECK_EQ(iy_search_query_check(Q("🎉🎉")), 0);
    CHECK_EQ(iy_search_query_check(Q("h")), IY_EINVAL);          /* one code point */
    CHECK_EQ(iy_search_query_check(Q("안")), IY_EINVAL);
    CHECK_EQ(iy_search_query_check(Q("")), IY_EINVAL);
    CHECK_EQ(iy_search_query_check(Q("a\nb")), IY_EINVAL);       /* control characters */
    CHECK_EQ(iy_search_query_check(Q("a\x7f")), IY_EINVAL);
    CHECK_EQ(iy_search_query_check("ab\xff", 3), IY_EINVAL);     /* not UTF-8 */
    char q[512];
    memset(q, 'x', 100);
    CHECK_EQ(iy_search_query_check(q, 100), 0);
    memset(q, 'x', 101);
    CHECK_EQ(iy_search_query_check(q, 101), IY_EINVAL);          /* 101 code points */
    for (int i = 0; i < 100; i++) memcpy(q + 3 * i, "가", 3);
    CHECK_EQ(iy_search_query_check(q, 300), 0);                   /* 100 code points, 300 bytes */
}

static void test_find(void)
{
    CHECK_EQ(iy_search_find(Q("안녕하세요"), Q("안녕"), 0), 0);
    CHECK_EQ(iy_search_find(Q("여러분 안녕하세요"), Q("하세"), 0), 16);
    CHECK_EQ(iy_search_find(Q("Hello WORLD"), Q("world"), 0), 6);
    CHECK_EQ(iy_search_find(Q("hello world"), Q("WORLD"), 0), 6);
    CHECK_EQ(iy_search_find(Q("Ça VA, Élodie?"), Q("ça va"), 0), 0);
    CHECK_EQ(iy_search_find(Q("ÉLODIE"), Q("élodie"), 0), 0);
    CHECK_EQ(iy_search_find(Q("ПРИВЕТ мир"), Q("привет"), 0), 0);
    CHECK_EQ(iy_search_find(Q("ΑΒΓ"), Q("αβγ"), 0), 0);
    CHECK_EQ(iy_search_find(Q("ŁÓDŹ"), Q("łódź"), 0), 0);
    CHECK_EQ(iy_search_find(Q("party 🎉 time"), Q("🎉 t"), 0), 6);
    CHECK_EQ(iy_search_find(Q("abc"), Q("abcd"), 0), -1);
    CHECK_EQ(iy_search_find(Q("abcabc"), Q("abc"), 1), 3);
    CHECK_EQ(iy_search_find(Q("abcabc"), Q("abc"), 4), -1);
    CHECK_EQ(iy_search_find(Q("a×b"), Q("a÷b"), 0), -1);   /* × is no capital of ÷ */
    CHECK_EQ(iy_search_find(Q("straße"), Q("STRASSE"), 0), -1);   /* no full case folding */
}

static void test_snippet(void)
{
    iy_snippet sn;
    CHECK_EQ(iy_search_snippet(Q("Hello world, hello"), Q("HELLO"), &sn), 1);
    CHECK_MEM(sn.text, sn.len, "Hello world, hello");
    CHECK_EQ(sn.nhl, 2);
    CHECK(sn.hl[0][0] == 0 && sn.hl[0][1] == 5 && sn.hl[1][0] == 13 && sn.hl[1][1] == 18);
    CHECK_EQ(iy_search_snippet(Q("nothing here"), Q("absent"), &sn), 0);
    CHECK_EQ(sn.len, 0);
    /* offsets count code points, not bytes */
    CHECK_EQ(iy_search_snippet(Q("🎉 안녕하세요 🎉"), Q("안녕"), &sn), 1);
    CHECK(sn.nhl == 1 && sn.hl[0][0] == 2 && sn.hl[0][1] == 4);
    /* a long text is cut IY_SNIPPET_CP code points before and after, with "…" */
    char t[4000];
    size_t n = 0;
    for (int i = 0; i < 100; i++) { memcpy(t + n, "가", 3); n += 3; }
    memcpy(t + n, "needle", 6);
    n += 6;
    for (int i = 0; i < 100; i++) t[n++] = 'z';
    CHECK_EQ(iy_search_snippet(t, n, Q("NEEDLE"), &sn), 1);
    CHECK_EQ(sn.len, 3 + 3 * IY_SNIPPET_CP + 6 + IY_SNIPPET_CP + 3);
    CHECK(memcmp(sn.text, "\xE2\x80\xA6", 3) == 0 && memcmp(sn.text + sn.len - 3, "\xE2\x80\xA6", 3) == 0);
    CHECK(sn.nhl == 1 && sn.hl[0][0] == 1 + IY_SNIPPET_CP && sn.hl[0][1] == 1 + IY_SNIPPET_CP + 6);
    /* at most IY_SNIPPET_HL_MAX highlights, all inside the window */
    CHECK_EQ(iy_search_snippet(Q("aa aa aa aa aa aa aa aa aa aa aa aa"), Q("aa"), &sn), 1);
    CHECK_EQ(sn.nhl, IY_SNIPPET_HL_MAX);
    /* the longest query in the longest window fits */
    char big[2000], q[400];
    n = 0;
    for (int i = 0; i < 300; i++) { memcpy(big + n, "😀", 4); n += 4; }
    memcpy(q, big, 400);
    CHECK_EQ(iy_search_snippet(big, n, q, 400, &sn), 1);
    CHECK(sn.len < sizeof sn.text);
}

static void test_score(void)
{
    /* a whole word, then the start of one, then inside one */
    CHECK(iy_search_score(Q("a cat sat"), Q("cat")) > iy_search_score(Q("a catalog"), Q("cat")));
    CHECK(iy_search_score(Q("a catalog"), Q("cat")) > iy_search_score(Q("concat"), Q("cat")));
    CHECK(iy_search_score(Q("concat and category"), Q("cat")) == iy_search_score(Q("category and concat"), Q("cat")));
    /* the best place counts, wherever it is; then the shorter text */
    CHECK(iy_search_score(Q("concat cat"), Q("CAT")) > iy_search_score(Q("category"), Q("cat")));
    CHECK(iy_search_score(Q("cat"), Q("cat")) > iy_search_score(Q("the cat"), Q("cat")));
    /* Korean: a word with a particle still starts with the query */
    CHECK(iy_search_score(Q("회의는 3시"), Q("회의")) > iy_search_score(Q("정기회의 3시"), Q("회의")));
    CHECK_EQ(iy_search_score(Q("nothing"), Q("cat")), 0);
}

int main(void)
{
    test_score();
    test_query();
    test_find();
    test_snippet();
    return T_DONE("search");
}
