/* u64map.c — linear probing with backward-shift deletion (see u64map.h). */
#include "u64map.h"
#include "alloc.h"
#include <string.h>

static size_t slot(uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

uint64_t *u64map_find(const u64map *m, uint64_t key)
{
    if (!m->cap || !key) return NULL;
    for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == 0) return NULL;
    }
}

static void grow(u64map *m)
{
    u64map bigger = { 0 };
    bigger.cap = m->cap ? m->cap * 2 : 16;
    bigger.keys = iy_calloc(bigger.cap, sizeof *bigger.keys);
    bigger.vals = iy_calloc(bigger.cap, sizeof *bigger.vals);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) u64map_set(&bigger, m->keys[i], m->vals[i]);
    u64map_free(m);
    *m = bigger;
}

void u64map_set(u64map *m, uint64_t key, uint64_t val)
{
    if ((m->n + 1) * 4 > m->cap * 3) grow(m);
    for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) { m->vals[i] = val; return; }
        if (m->keys[i] == 0) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->n++;
            return;
        }
    }
}

void u64map_clear(u64map *m)
{
    if (m->n) memset(m->keys, 0, m->cap * sizeof *m->keys);
    m->n = 0;
}

void *u64map_get(const u64map *m, uint64_t key)
{
    uint64_t *v = u64map_find(m, key);
    return v ? (void *)(uintptr_t)*v : NULL;
}

void u64map_put(u64map *m, uint64_t key, void *val) { u64map_set(m, key, (uint64_t)(uintptr_t)val); }

void *u64map_del(u64map *m, uint64_t key)
{
    if (!m->cap) return NULL;
    size_t mask = m->cap - 1, i = slot(key, m->cap);
    while (m->keys[i] != key) {
        if (m->keys[i] == 0) return NULL;
        i = (i + 1) & mask;
    }
    void *val = (void *)(uintptr_t)m->vals[i];
    /* Shift back every following entry that would not be found past the hole. */
    for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
        size_t home = slot(m->keys[j], m->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->vals[i] = 0;
    m->n--;
    return val;
}

void u64map_free(u64map *m)
{
    iy_free(m->keys);
    iy_free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->n = 0;
}
