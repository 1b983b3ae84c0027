/* admin_fill.c — `iyagid admin create-users ... --messages N`: history for
 * the search benchmark, written through the store's commit rounds and the
 * server's own send rules (post_send), a thousand sends per round.
 *
 * The texts are made up but shaped like chat: 4 to 16 words, about half of
 * them Korean, drawn from two vocabularies with Zipf frequencies (the word
 * of rank r is 1/r as common as the first), so a query can be picked by how
 * common it is. Korean words are 2 or 3 syllables from 120 common ones, so
 * two-syllable substrings recur inside longer words as they do in real
 * Korean. Everything comes from a fixed seed: the same command makes the
 * same history. The queries the benchmark should ask are written to the
 * users file as "query CLASS TEXT" lines (bench/search.c reads them). */
#include "admin_fill.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../base/alloc.h"
#include "../base/err.h"
#include "../chat/post.h"

#define EN_WORDS 4000
#define KO_WORDS 3000
#define ROUND 1000

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct vocab {
    char (*w)[16];
    double *cum;                 /* cumulative Zipf weights */
    int n;
} vocab;

static const char *const SYL_EN[] = { "ka", "lo", "mi", "ren", "tas", "vo", "pel", "dri", "su", "nak",
                                      "tor", "bi", "que", "zan", "fle", "mon", "gri", "ho", "wes", "cal" };
/* 120 common Hangul syllables (UTF-8, 3 bytes each). */
static const char SYL_KO[] =
    "가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허고노도로모보소오조초코토포호"
    "구누두루무부수우주추쿠투푸후기니디리미비시이지치키티피히개내대래매배새애재채캐태패해"
    "게네데레메베세에제체케테페헤국눈달람문밤산안정창";

static void vocab_make(vocab *v, int n, int korean)
{
    v->n = n;
    v->w = iy_calloc((size_t)n, sizeof *v->w);
    v->cum = iy_malloc((size_t)n * sizeof *v->cum);
    size_t nsyl = strlen(SYL_KO) / 3;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        char *w = v->w[i];
        int k = 2 + (int)(next() % 2);
        w[0] = '\0';
        for (int j = 0; j < k; j++) {
            if (korean) strncat(w, SYL_KO + 3 * (next() % nsyl), 3);
            else strcat(w, SYL_EN[next() % (sizeof SYL_EN / sizeof *SYL_EN)]);
        }
        sum += 1.0 / (i + 1);
        v->cum[i] = sum;
    }
}

static const char *vocab_pick(const vocab *v)
{
    double x = (double)(next() >> 11) / 9007199254740992.0 * v->cum[v->n - 1];
    int a = 0, b = v->n - 1;
    while (a < b) {
        int m = (a + b) / 2;
        if (v->cum[m] < x) a = m + 1;
        else b = m;
    }
    return v->w[a];
}

static size_t make_text(char *t, const vocab *en, const vocab *ko)
{
    int words = 4 + (int)(next() % 13);
    size_t n = 0;
    for (int i = 0; i < words; i++) {
        const char *w = next() % 2 ? vocab_pick(ko) : vocab_pick(en);
        if (i) t[n++] = ' ';
        size_t l = strlen(w);
        memcpy(t + n, w, l);
        n += l;
        if (next() % 50 == 0) {
            memcpy(t + n, " 🎉", 5);
            n += 5;
        }
    }
    t[n] = '\0';
    return n;
}

int admin_fill(store *s, FILE *out, const uint64_t *groups, const uint64_t (*members)[IY_GROUP_MAX],
               long ngroups, long group_size, long messages)
{
    vocab en, ko;
    vocab_make(&en, EN_WORDS, 0);
    vocab_make(&ko, KO_WORDS, 1);
    /* What to ask, by how common it is (rank 1 is in ~1 message in 9). */
    fprintf(out, "query en_common %s\nquery en_mid %s\nquery en_rare %s\n", en.w[0], en.w[99], en.w[EN_WORDS - 1]);
    /* The most common Korean words of three syllables (the trigram index)
     * and of two (no trigram in it: a scan), and a rare one. */
    int k3 = 0, k2 = 0;
    while (strlen(ko.w[k3]) != 9) k3++;
    while (strlen(ko.w[k2]) != 6) k2++;
    fprintf(out, "query ko_common %s\nquery ko_2syllables %s\nquery ko_rare %s\nquery absent qzxwvj\n",
            ko.w[k3], ko.w[k2], ko.w[KO_WORDS - 1]);

    iy_send *sends = iy_calloc(ROUND, sizeof *sends);
    char (*texts)[16 * 20] = iy_malloc(ROUND * sizeof *texts);
    char (*cmids)[32] = iy_malloc(ROUND * sizeof *cmids);
    iy_stored *st = iy_malloc(sizeof *st);
    int rc = 0;
    for (long done = 0; done < messages && rc == 0;) {
        size_t n = (size_t)(messages - done < ROUND ? messages - done : ROUND);
        for (size_t i = 0; i < n; i++) {
            long g = (done + (long)i) % ngroups;
            size_t tl = make_text(texts[i], &en, &ko);
            snprintf(cmids[i], sizeof cmids[i], "fill-%ld", done + (long)i);
            sends[i] = (iy_send){ .from = members[g][next() % (uint64_t)group_size], .channel = groups[g],
                                  .text = texts[i], .text_len = tl, .cmid = cmids[i] };
        }
        store_round *r = NULL;
        if ((rc = store_round_begin(s, sends, n, &r)) != 0) break;
        for (size_t i = 0; i < n && rc == 0; i++) rc = post_send(r, &sends[i], st);
        if (rc) store_round_abort(r);
        else rc = store_round_commit(r);
        done += (long)n;
        if (done % 100000 == 0) fprintf(stderr, "iyagid admin: %ld messages\n", done);
    }
    if (rc) fprintf(stderr, "iyagid admin: storing messages failed (%s)\n", iy_err_code(rc));
    iy_free(st);
    iy_free(cmids);
    iy_free(texts);
    iy_free(sends);
    iy_free(en.w);
    iy_free(en.cum);
    iy_free(ko.w);
    iy_free(ko.cum);
    return rc;
}
