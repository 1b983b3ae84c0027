/* hist.c — log-linear latency histogram: exact counts in fixed buckets, so
 * histograms of several workers merge exactly and quantiles are read off the
 * merged counts (never an average of percentiles). */
#include "bench.h"
#include <string.h>

#define SUB (1u << HIST_SUB_BITS)

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * SUB) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);        /* >= HIST_SUB_BITS + 1 */
    if (e >= HIST_MAX_EXP) return HIST_BUCKETS - 1;
    unsigned shift = e - HIST_SUB_BITS;
    unsigned m = (unsigned)(v >> shift);                   /* in [SUB, 2*SUB) */
    return 2 * SUB + (e - HIST_SUB_BITS - 1) * SUB + (m - SUB);
}

/* The middle of bucket i (its exact value below 2*SUB). */
static uint64_t bucket_value(unsigned i)
{
    if (i < 2 * SUB) return i;
    unsigned e = (i - 2 * SUB) / SUB + HIST_SUB_BITS + 1;
    unsigned m = (i - 2 * SUB) % SUB + SUB;
    unsigned shift = e - HIST_SUB_BITS;
    return ((uint64_t)m << shift) + ((uint64_t)1 << shift) / 2;
}

void hist_init(hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_add(hist *h, uint64_t ns)
{
    h->b[bucket_of(ns)]++;
    h->n++;
    h->sum += (double)ns;
    if (ns > h->max) h->max = ns;
    if (ns < h->min) h->min = ns;
}

void hist_merge(hist *into, const hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) into->b[i] += from->b[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->max > into->max) into->max = from->max;
    if (from->min < into->min) into->min = from->min;
}

uint64_t hist_quantile(const hist *h, double q)
{
    if (!h->n) return 0;
    if (q >= 1.0) return h->max;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n) rank = h->n - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > rank) {
            uint64_t v = bucket_value(i);
            return v > h->max ? h->max : v < h->min ? h->min : v;
        }
    }
    return h->max;
}
