/*
 * The timer service of one keyed operator subtask: the pending event-time
 * and processing-time timers, as Flink's InternalTimerServiceImpl keeps
 * them (SEMANTICS.md section 3).
 *
 * A timer is the triple (timestamp, key, namespace) and the timers of a kind
 * are a set: registering a pending triple again changes nothing, so a timer
 * fires once however often it was registered. Timers fire in one total
 * order, eddy's choice 2: timestamp, then key group, then key bytes, then
 * namespace bytes (bytewise), so that runs are reproducible.
 *
 * Timers are kept per key group, like Flink's
 * KeyGroupPartitionedPriorityQueue, because key groups are what snapshots
 * write and what a rescale hands from one subtask to another: whole key
 * groups can be listed, added or dropped without touching the others.
 *
 * Two implementations keep this promise, as Flink's two timer-service
 * factories do: in memory (eddy_timers_new, Flink's HEAP), and in the
 * RocksDB backend's own column families (eddy_backend_timers of a RocksDB
 * backend, Flink's ROCKSDB), where the timers are part of the database and
 * so of its native checkpoints.
 */
#ifndef EDDY_STATE_TIMERS_H
#define EDDY_STATE_TIMERS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

typedef struct eddy_timers eddy_timers;

typedef enum eddy_timer_kind {
  EDDY_TIMER_EVENT = 0,
  EDDY_TIMER_PROCESSING = 1
} eddy_timer_kind;

typedef struct eddy_timer {
  int64_t timestamp;
  int key_group; /* the caller computes it from the key (eddy_key_group) */
  eddy_slice key; /* canonical MessagePack bytes, non-empty */
  eddy_slice ns;  /* canonical MessagePack bytes, may be empty (no namespace) */
} eddy_timer;

/*
 * An in-memory timer service for the key groups [first_key_group, last_key_group] of
 * an operator with max_parallelism key groups. EDDY_EINVAL (message in err,
 * which may be NULL) for a range that is not inside [0, max_parallelism) or
 * a max parallelism outside (0, 32768]; EDDY_ENOMEM.
 */
int eddy_timers_new(int max_parallelism, int first_key_group, int last_key_group,
                    eddy_timers **out, eddy_err *err);

/* Frees t and every pending timer; NULL is fine. (A backend's timer
 * service belongs to the backend, which frees it.) */
void eddy_timers_free(eddy_timers *t);

/* 1 when t keeps its timers in its backend's storage, so that a native
 * snapshot of the backend holds them; 0 for the in-memory service. */
int eddy_timers_in_backend(const eddy_timers *t);

/* The message of the last failed call on t; owned by t, valid until the next
 * call on t. */
const char *eddy_timers_errmsg(const eddy_timers *t);

/*
 * Adds a timer of a kind; the key and namespace bytes are copied. *added
 * (added may be NULL) is 1 if the timer was new, 0 if it was already
 * pending or the call failed. EDDY_EINVAL for a key group outside the range,
 * an empty key or an unknown kind; EDDY_ELIMIT for a key and namespace of
 * 4 GiB or more; EDDY_ENOMEM leaves t as it was.
 */
int eddy_timers_register(eddy_timers *t, eddy_timer_kind kind,
                         const eddy_timer *timer, int *added);

/* Removes the exact triple of a kind; a timer that is not pending is fine
 * (EDDY_OK). Same argument checks as register. Never fails for memory. */
int eddy_timers_delete(eddy_timers *t, eddy_timer_kind kind, const eddy_timer *timer);

/*
 * The earliest pending timer of a kind, or EDDY_ENOTFOUND when there is
 * none. The slices of *out point into t and stay valid until the next
 * register, delete, pop, drop_key_group or free on t.
 */
int eddy_timers_peek(eddy_timers *t, eddy_timer_kind kind, eddy_timer *out);

/*
 * Removes the earliest pending timer of a kind and returns it in *out if its
 * timestamp is <= limit; otherwise EDDY_ENOTFOUND and nothing changes.
 * The popped timer's bytes are kept by t: the slices of *out stay valid
 * until the next pop (of either kind) or free on t, so a timer callback may
 * register and delete timers while it still reads its own key. Never fails
 * for memory.
 */
int eddy_timers_pop(eddy_timers *t, eddy_timer_kind kind, int64_t limit,
                    eddy_timer *out);

/* The number of pending timers of a kind (0 for an unknown kind). In
 * memory a counter; in RocksDB a scan of the timers, for tests and tools. */
size_t eddy_timers_count(const eddy_timers *t, eddy_timer_kind kind);

/*
 * Calls visit for every pending timer of a kind, in firing order: all of
 * them when key_group is -1, else those of that key group. The timer handed
 * to visit and its slices are valid only during that visit.
 * visit must not change t (register, delete, pop, drop_key_group) nor walk
 * it again; if it does, the walk stops after that visit with EDDY_EINVAL.
 * visit may raise (longjmp) out of the walk: t stays usable and the memory
 * of the walk is freed by the next walk or by eddy_timers_free.
 * A non-zero return from visit stops the walk and is returned as is.
 * Otherwise EDDY_OK, EDDY_EINVAL (kind, key group, no visit) or EDDY_ENOMEM
 * (a walk sorts a copy of the timers' positions, 16 bytes per timer).
 */
int eddy_timers_each(eddy_timers *t, eddy_timer_kind kind, int key_group,
                     int (*visit)(void *ud, const eddy_timer *timer), void *ud);

/* Drops the timers of both kinds in one key group of the range (for
 * rescaling). EDDY_EINVAL for a key group outside the range. */
int eddy_timers_drop_key_group(eddy_timers *t, int key_group);

#endif
