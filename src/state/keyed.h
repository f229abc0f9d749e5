/*
 * The keyed context of one operator subtask: its backend plus the current
 * key and namespace, which every state access is implicitly scoped to (as in
 * Flink, where a state handle reads and writes the value of the key being
 * processed). The runtime sets the key before each record and timer; the
 * binding's state handles build their rows from it.
 */
#ifndef EDDY_STATE_KEYED_H
#define EDDY_STATE_KEYED_H

#include <stddef.h>
#include <stdint.h>

#include "state/backend.h"
#include "state/timers.h"

typedef struct eddy_keyed eddy_keyed;

/* Takes ownership of backend (destroyed with the context, even on error). */
int eddy_keyed_new(eddy_backend *backend, eddy_keyed **out, eddy_err *err);
void eddy_keyed_free(eddy_keyed *k);

eddy_backend *eddy_keyed_backend(eddy_keyed *k);

/*
 * Makes key (canonical MessagePack bytes, copied) the current key.
 * key_group < 0 means compute it; otherwise the caller vouches for it (the
 * runtime computed it when routing the record). Fails with EDDY_EINVAL if the
 * key is nil or its key group is not owned by this backend. Clears the
 * namespace.
 */
int eddy_keyed_set_key(eddy_keyed *k, const void *key, size_t len, int key_group);
/* Forget the current key (outside process/on_timer). */
void eddy_keyed_clear_key(eddy_keyed *k);
int eddy_keyed_has_key(const eddy_keyed *k);
/* The current key's bytes; valid until the key changes. */
eddy_slice eddy_keyed_key(const eddy_keyed *k);
int eddy_keyed_key_group(const eddy_keyed *k);

/* Sets (copies) the namespace; len 0 means none. */
int eddy_keyed_set_namespace(eddy_keyed *k, const void *ns, size_t len);

/* The row of state for the current key and namespace. Its pointers are
 * valid until the key or namespace changes. */
eddy_row eddy_keyed_row(const eddy_keyed *k, uint32_t state);

/* ---- timers of the current key and namespace ---- */

/* The subtask's timer service (owned by the context). */
eddy_timers *eddy_keyed_timers(eddy_keyed *k);

/* Registers or deletes the timer (timestamp, current key, current
 * namespace). EDDY_EINVAL without a current key. */
int eddy_keyed_register_timer(eddy_keyed *k, eddy_timer_kind kind, int64_t ts);
int eddy_keyed_delete_timer(eddy_keyed *k, eddy_timer_kind kind, int64_t ts);

/* Removes the earliest timer due at limit or before and makes its key and
 * namespace current; *ts gets its time. EDDY_ENOTFOUND if none is due. */
int eddy_keyed_pop_timer(eddy_keyed *k, eddy_timer_kind kind, int64_t limit, int64_t *ts);

/* The message of the last failed set_key or set_namespace (state accesses
 * report through eddy_backend_errmsg of the backend). */
const char *eddy_keyed_errmsg(const eddy_keyed *k);

#endif
