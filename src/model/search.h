/* search.h — the rules of message search that do not depend on an index:
 * what a query may be, what "matches" means, and the snippet shown for a
 * match. Pure functions over UTF-8 (valid, as everything stored is).
 *
 * Matching is a substring match of the query's code points, with letters
 * of the Latin, Greek and Cyrillic scripts folded to one case (Korean,
 * Japanese, Chinese and emoji have no case): "안녕" matches "안녕하세요",
 * "HELLO" matches "hello". The indexes (SQLite FTS5 trigram, PostgreSQL
 * pg_trgm) only propose candidates; iy_search_find decides, so both
 * backends answer the same. */
#ifndef IY_MODEL_SEARCH_H
#define IY_MODEL_SEARCH_H
#include <stddef.h>
#include <stdint.h>
#include "../base/limits.h"

/* A query as given (?q=): 0 if it is valid UTF-8 of IY_SEARCH_MIN_CP to
 * IY_SEARCH_MAX_CP code points without control characters, else IY_EINVAL. */
int iy_search_query_check(const char *q, size_t len);

/* The byte offset of the first match of q in text at or after byte `from`,
 * or -1. */
long iy_search_find(const char *text, size_t len, const char *q, size_t qlen, size_t from);

/* How well q matches text (which contains it), for ranking the newest
 * matches: where q is a whole word beats where it starts a word, which
 * beats inside one; then a shorter text beats a longer one. Higher is
 * better; 0 if q does not match. */
int64_t iy_search_score(const char *text, size_t len, const char *q, size_t qlen);

#define IY_SNIPPET_CP 32          /* code points kept on each side of the first match */
#define IY_SNIPPET_HL_MAX 8       /* highlights in one snippet */
#define IY_SNIPPET_MAX (4 * (2 * IY_SNIPPET_CP + IY_SEARCH_MAX_CP) + 8)

/* The snippet of a match: the text around the first match (IY_SNIPPET_CP
 * code points each side, "…" where cut) and where q occurs in it, as code
 * point offsets [start, end) into the snippet. */
typedef struct iy_snippet {
    char text[IY_SNIPPET_MAX];
    size_t len;
    uint32_t hl[IY_SNIPPET_HL_MAX][2];
    size_t nhl;
} iy_snippet;

/* Fills out for q in text: 1 if q matches, else 0 (out empty). */
int iy_search_snippet(const char *text, size_t len, const char *q, size_t qlen, iy_snippet *out);

#endif
