/* indexer.h — the search indexer thread: keeps the store's search index
 * (store.h, "search") caught up with what this node commits.
 *
 * It never touches the commit path: it polls the store (every 250 ms while
 * caught up, at once while there is more) at low CPU priority (nice 10),
 * so a message is findable about a quarter of a second after its ack on a
 * node with CPU to spare (later on a saturated one), and a crash costs nothing but
 * the re-indexing of the index's last unfinished batch at the next start.
 * A failing step (the database away, an I/O error) is logged once and
 * retried every second. */
#ifndef IY_INDEXER_H
#define IY_INDEXER_H
#include <stdint.h>
#include "store.h"

typedef struct indexer indexer;

/* Starts the thread over s: NULL if the index cannot be opened or the
 * thread cannot start (logged; the server then runs without search). */
indexer *indexer_start(store *s);

/* Stops the thread (finishing its step) and frees it; before store_free.
 * Accepts NULL. */
void indexer_stop(indexer *x);

/* The newest message id indexed, and messages indexed since the start. */
uint64_t indexer_cursor(indexer *x);
uint64_t indexer_count(indexer *x);

#endif
