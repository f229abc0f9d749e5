/*
 * What a backend implementation provides: the operation table behind
 * backend.h, and the part of the backend object every implementation shares
 * (embedded as the first member of its own struct). Only backend.c and the
 * backend implementations include this file.
 *
 * The public eddy_backend_* functions in backend.c check arguments, keep
 * the state registry and forward here; implementations may assume that a
 * row's state id is registered, its key group is in range, and its key is
 * non-empty.
 */
#ifndef EDDY_STATE_BACKEND_IMPL_H
#define EDDY_STATE_BACKEND_IMPL_H

#include "state/backend.h"

#define EDDY_BACKEND_OPS_VERSION 3 /* 2: snapshots, 3: bulk restore */

typedef struct eddy_backend_ops {
  int version; /* EDDY_BACKEND_OPS_VERSION */
  const char *name;
  /* storage for a newly registered state id (ids are dense from 0) */
  int (*add_state)(eddy_backend *b, uint32_t id, const char *name,
                   eddy_state_kind kind);
  int (*get)(eddy_backend *b, const eddy_row *row, eddy_slice *value);
  int (*put)(eddy_backend *b, const eddy_row *row, const void *v, size_t n);
  int (*clear)(eddy_backend *b, const eddy_row *row);
  int (*list_append)(eddy_backend *b, const eddy_row *row, const void *v,
                     size_t n);
  int (*list_get)(eddy_backend *b, const eddy_row *row, eddy_slice *elems);
  int (*list_set)(eddy_backend *b, const eddy_row *row, const void *v,
                  size_t n);
  int (*map_get)(eddy_backend *b, const eddy_row *row, const void *uk,
                 size_t ukn, eddy_slice *value);
  int (*map_put)(eddy_backend *b, const eddy_row *row, const void *uk,
                 size_t ukn, const void *v, size_t n);
  int (*map_remove)(eddy_backend *b, const eddy_row *row, const void *uk,
                    size_t ukn);
  int (*map_entries)(eddy_backend *b, const eddy_row *row,
                     eddy_slice *entries);
  int (*cursor_open)(eddy_backend *b, uint32_t state,
                     eddy_backend_cursor **out);
  int (*cursor_next)(eddy_backend_cursor *c, eddy_row *row, eddy_slice *value);
  void (*cursor_close)(eddy_backend_cursor *c);
  /* The threading rules of backend.h hold: snapshot_next runs on a writer
   * thread while the main thread calls everything else. */
  int (*snapshot_open)(eddy_backend *b, eddy_backend_snapshot **out);
  int (*snapshot_next)(eddy_backend_snapshot *s, eddy_row *row,
                       eddy_slice *value);
  void (*snapshot_close)(eddy_backend_snapshot *s);
  /* A map row's payload is whole entries (the public function checks). */
  int (*restore_row)(eddy_backend *b, const eddy_row *row, const void *v,
                     size_t n);
  int (*restore_done)(eddy_backend *b);
  /* Optional: what the backend can tell of a state's footprint (fields it
   * cannot tell stay -1). */
  int (*state_metrics)(eddy_backend *b, uint32_t state, eddy_state_metrics *m);
  /* Optional: a timer service kept in the backend's storage. */
  struct eddy_timers *(*timers)(eddy_backend *b);
  void (*destroy)(eddy_backend *b); /* frees the whole object */
} eddy_backend_ops;

typedef struct eddy_state_info {
  char *name;
  eddy_state_kind kind;
} eddy_state_info;

struct eddy_backend {
  const eddy_backend_ops *ops;
  eddy_err err;
  int max_parallelism;
  int first_key_group;
  int last_key_group;
  uint32_t nstates;
  uint32_t states_cap;
  eddy_state_info *states;
};

/* Every implementation's cursor starts with this, so that the generic
 * functions can reach the operation table. */
struct eddy_backend_cursor {
  eddy_backend *backend;
};

/* Likewise for snapshots. err belongs to the thread that calls next: the
 * backend's own err is the main thread's. */
struct eddy_backend_snapshot {
  eddy_backend *backend;
  eddy_err err;
};

/* Fills the shared part; implementations call it first in their
 * constructor. */
int eddy_backend_base_init(eddy_backend *b, const eddy_backend_ops *ops,
                           const eddy_backend_config *cfg, eddy_err *err);
/* Frees what base_init and register allocated; implementations call it
 * from destroy. */
void eddy_backend_base_free(eddy_backend *b);

#endif
