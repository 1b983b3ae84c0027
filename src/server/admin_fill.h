/* admin_fill.h — history for the search benchmark (admin_fill.c). */
#ifndef IY_ADMIN_FILL_H
#define IY_ADMIN_FILL_H
#include <stdint.h>
#include <stdio.h>
#include "../base/limits.h"
#include "../store/store.h"

/* Stores `messages` made-up chat messages round robin over groups[0..ngroups)
 * (group g's members[g][0..group_size), a random one sending each), and
 * writes the benchmark's "query CLASS TEXT" lines to out. 0 or an error. */
int admin_fill(store *s, FILE *out, const uint64_t *groups, const uint64_t (*members)[IY_GROUP_MAX],
               long ngroups, long group_size, long messages);

#endif
