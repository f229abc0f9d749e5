/*
 * What a timer service implementation provides: the operation table behind
 * timers.h and the part of the object every implementation shares
 * (embedded as the first member of its own struct). Only timers.c and the
 * implementations include this file.
 *
 * The public eddy_timers_* functions in timers.c check their arguments
 * (kind, key group in range, non-empty key, lengths) and forward here, so
 * implementations may assume them checked.
 */
#ifndef EDDY_STATE_TIMERS_IMPL_H
#define EDDY_STATE_TIMERS_IMPL_H

#include "state/timers.h"

typedef struct eddy_timers_ops {
  int (*add)(eddy_timers *t, eddy_timer_kind kind, const eddy_timer *timer, int *added);
  int (*remove)(eddy_timers *t, eddy_timer_kind kind, const eddy_timer *timer);
  /* the earliest timer, or EDDY_ENOTFOUND (message set) */
  int (*head)(eddy_timers *t, eddy_timer_kind kind, eddy_timer *out);
  /* removes the earliest timer if it is due at limit, as eddy_timers_pop */
  int (*pop)(eddy_timers *t, eddy_timer_kind kind, int64_t limit, eddy_timer *out);
  size_t (*count)(eddy_timers *t, eddy_timer_kind kind);
  /* key_group is -1 or in range; visit is not NULL */
  int (*each)(eddy_timers *t, eddy_timer_kind kind, int key_group,
              int (*visit)(void *ud, const eddy_timer *timer), void *ud);
  int (*drop_key_group)(eddy_timers *t, int key_group);
  void (*destroy)(eddy_timers *t); /* frees the whole object */
} eddy_timers_ops;

struct eddy_timers {
  const eddy_timers_ops *ops;
  int max_parallelism;
  int first; /* key-group range */
  int last;
  int in_backend; /* kept in the backend's own storage (see timers.h) */
  eddy_err err;
};

/* Checks the range and fills the shared part. */
int eddy_timers_base_init(eddy_timers *t, const eddy_timers_ops *ops, int max_parallelism,
                          int first_key_group, int last_key_group, eddy_err *err);

#endif
