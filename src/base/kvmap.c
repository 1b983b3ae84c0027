/* kvmap.c — a byte-keyed hash map of small records (see kvmap.h).
 *
 * Each entry is one malloc'd block, key bytes then value bytes; a value of
 * NULL is a tombstone (deleted in the batch). Open addressing with linear
 * probing over an index of entry numbers; entries are never removed one by
 * one, only all at once (iy_kv_clear), so there are no tombstone slots
 * in the index. bytes counts keys and values, for the caller's bound. */
#include "kvmap.h"
#include <string.h>
#include "alloc.h"

static uint64_t kv_hash(const uint8_t *k, size_t kl)
{
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
    for (size_t i = 0; i < kl; i++) h = (h ^ k[i]) * 0x100000001b3ull;
    return h ^ h >> 29;
}

/* The index slot of key k: its entry, or the empty slot where it goes. */
static size_t kv_slot(const iy_kvmap *m, const uint8_t *k, size_t kl, uint64_t h)
{
    for (size_t i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        uint32_t e = m->idx[i];
        if (e == 0) return i;
        const iy_kv_ent *x = &m->v[e - 1];
        if (x->h == h && x->kl == kl && memcmp(x->p, k, kl) == 0) return i;
    }
}

int iy_kv_get(const iy_kvmap *m, const void *k, size_t kl, const uint8_t **v, size_t *vl)
{
    if (m->n == 0) return 0;
    uint32_t e = m->idx[kv_slot(m, k, kl, kv_hash(k, kl))];
    if (e == 0) return 0;
    const iy_kv_ent *x = &m->v[e - 1];
    if (x->del) return 2;
    *v = x->p + x->kl;
    *vl = x->vl;
    return 1;
}

static void kv_grow(iy_kvmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    iy_free(m->idx);
    m->idx = iy_calloc(cap, sizeof *m->idx);
    m->cap = cap;
    for (size_t j = 0; j < m->n; j++) {
        size_t i = (size_t)m->v[j].h & (cap - 1);
        while (m->idx[i]) i = (i + 1) & (cap - 1);
        m->idx[i] = (uint32_t)(j + 1);
    }
}

void iy_kv_put(iy_kvmap *m, const void *k, size_t kl, const void *v, size_t vl)
{
    if ((m->n + 1) * 4 > m->cap * 3) kv_grow(m);   /* load <= 3/4 */
    if (!v) vl = 0;
    uint64_t h = kv_hash(k, kl);
    size_t i = kv_slot(m, k, kl, h);
    iy_kv_ent *x;
    if (m->idx[i]) {
        x = &m->v[m->idx[i] - 1];
        m->bytes -= x->kl + x->vl;
        iy_free(x->p);
    } else {
        if (m->n == m->nv) {
            m->nv = m->nv ? m->nv * 2 : 64;
            m->v = iy_realloc(m->v, m->nv * sizeof *m->v);
        }
        x = &m->v[m->n++];
        m->idx[i] = (uint32_t)m->n;
    }
    x->h = h;
    x->kl = (uint32_t)kl;
    x->vl = (uint32_t)vl;
    x->del = v == NULL;
    x->p = iy_malloc(kl + vl + 1);
    memcpy(x->p, k, kl);
    if (vl) memcpy(x->p + kl, v, vl);
    m->bytes += kl + vl;
}

void iy_kv_merge(iy_kvmap *dst, const iy_kvmap *src, int (*keep)(const uint8_t *k, size_t kl))
{
    for (size_t j = 0; j < src->n; j++) {
        const iy_kv_ent *x = &src->v[j];
        if (keep(x->p, x->kl))
            iy_kv_put(dst, x->p, x->kl, x->del ? NULL : x->p + x->kl, x->vl);
    }
}

void iy_kv_clear(iy_kvmap *m)
{
    if (m->n == 0) return;
    for (size_t j = 0; j < m->n; j++) iy_free(m->v[j].p);
    memset(m->idx, 0, m->cap * sizeof *m->idx);
    m->n = 0;
    m->bytes = 0;
}

void iy_kv_free(iy_kvmap *m)
{
    iy_kv_clear(m);
    iy_free(m->idx);
    iy_free(m->v);
    memset(m, 0, sizeof *m);
}
