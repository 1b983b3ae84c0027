/* counter.h — counts keyed by a nonzero u64 (connections per client
 * address, sockets per user), shared by threads: a mutex over a u64map.
 * A key at 0 is removed, so the map holds only live keys. */
#ifndef IY_COUNTER_H
#define IY_COUNTER_H
#include <stdint.h>

typedef struct counter counter;

counter *counter_new(void);
void counter_free(counter *c);

/* Adds one to key unless it is at max already: 1 if added, 0 if not. */
int counter_inc(counter *c, uint64_t key, uint32_t max);

/* Takes one from key (a key at 0 stays at 0). */
void counter_dec(counter *c, uint64_t key);

/* key's count now. */
uint32_t counter_get(counter *c, uint64_t key);

#endif
