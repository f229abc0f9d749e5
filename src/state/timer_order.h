/*
 * The key groups of one kind of timers, ordered by their first timers, as
 * Flink's KeyGroupPartitionedPriorityQueue orders its per-group queues:
 * the earliest timer of all is the first timer of the top group. Both
 * timer services (timers_heap.c, rocksdb_timers.c) keep one per kind.
 *
 * Groups are ordered by (timestamp of their first timer, group index):
 * two groups' first timers differ in key group, and eddy's firing order
 * puts the lower key group first on equal timestamps, so no bytes are
 * compared here. The arrays are sized for every group at creation, so
 * keeping the order up to date never fails for memory.
 */
#ifndef EDDY_STATE_TIMER_ORDER_H
#define EDDY_STATE_TIMER_ORDER_H

#include <stdint.h>

typedef struct eddy_timer_order {
  int *heap;     /* group indices, a binary min-heap */
  int *pos;      /* per group: its index in heap, -1 while it is empty */
  int64_t *head; /* per group: its first timer's timestamp */
  int n;         /* groups in heap */
} eddy_timer_order;

/* For groups 0 .. ngroups-1, all empty. EDDY_ENOMEM. */
int eddy_timer_order_init(eddy_timer_order *o, int ngroups);
void eddy_timer_order_free(eddy_timer_order *o);

/* Group g's first timer is now at timestamp head (g may have been empty). */
void eddy_timer_order_set(eddy_timer_order *o, int g, int64_t head);
/* Group g has become empty (fine if it was). */
void eddy_timer_order_remove(eddy_timer_order *o, int g);

/* The group holding the earliest timer, or -1 when every group is empty. */
static inline int eddy_timer_order_top(const eddy_timer_order *o)
{
  return o->n > 0 ? o->heap[0] : -1;
}

#endif
