/*
 * The canonical snapshot of a keyed operator subtask: the bytes its keyed
 * state and timers become in a checkpoint of the heap backend and in a
 * savepoint of any backend, and that a restore reads back into any backend
 * at any parallelism. So the format knows nothing of backends and is
 * organised by key group, the unit that rescaling hands from one subtask to
 * another: a restore keeps the key groups of its own range and skips the
 * others.
 *
 * Taking a snapshot has Flink's two parts. eddy_keyed_snapshot_take runs on
 * the main thread and is short: it freezes the backend
 * (eddy_backend_snapshot_open) and copies the timers. Processing then goes
 * on, and eddy_keyed_snapshot_write serializes the frozen state on any
 * thread.
 *
 * Format, version 1 (laid out like Redis's RDB: magic and version first,
 * typed sections, an end marker with counts and a checksum). The stream is
 * uncompressed; the caller compresses.
 *
 *   "EDDYKEYS"        8 bytes of magic
 *   version           a MessagePack integer; readers refuse newer versions
 *   sections          each one MessagePack array whose first element is
 *                     the section type:
 *     [1, max_parallelism, first_key_group, last_key_group, nstates]
 *                     the writer's key groups; exactly one, first
 *     [2, id, name, kind]
 *                     nstates of them, ids 0, 1, ... in order; name a str,
 *                     kind a str: "value", "list", "map", "reducing" or
 *                     "aggregating"
 *     then, for each key group that holds rows or timers, ascending:
 *     [3, key_group]  opens the key group
 *     [4, state, key, namespace, payload]
 *                     a row: state id, then three bins: the canonical
 *                     MessagePack key, the namespace (empty outside
 *                     windows) and the payload as the backend gives it
 *                     (a value; a list's elements back to back; a map's
 *                     user key, value, ... sorted by user key; never empty)
 *     [5, kind, timestamp, key, namespace]
 *                     a timer: kind 0 event time, 1 processing time; key
 *                     and namespace bins
 *     [6, rows, timers]
 *                     closes the key group with its counts
 *     [7, key_groups, rows, timers, checksum]
 *                     the end: totals, and the XXH3-64 of every byte
 *                     before this section as an integer (its 64 bits read
 *                     as int64); nothing may follow
 *
 * Rows come before the timers of their key group, in no particular order.
 */
#ifndef EDDY_STATE_SNAPSHOT_H
#define EDDY_STATE_SNAPSHOT_H

#include <stddef.h>

#include "state/keyed.h"
#include "util/err.h"

#define EDDY_KEYED_SNAPSHOT_VERSION 1

typedef struct eddy_keyed_snapshot eddy_keyed_snapshot;

/*
 * Main thread, the synchronous part: freezes k's backend and copies (as
 * encoded sections) every pending timer of k. k may change as soon as this
 * returns. *out belongs to the caller (eddy_keyed_snapshot_free), and must
 * be freed before k's backend is destroyed. EDDY_ENOMEM or EDDY_EINVAL with
 * a message in err (which may be NULL).
 */
int eddy_keyed_snapshot_take(eddy_keyed *k, eddy_keyed_snapshot **out,
                             eddy_err *err);

/*
 * The same without the rows: the states (names and kinds) and the timers
 * only, beside a backend's native snapshot of the rows (an incremental
 * checkpoint of RocksDB), whose restore registers the states first. Timers
 * the backend keeps itself (eddy_timers_in_backend) are in the native
 * snapshot, so not here. The backend is not touched.
 */
int eddy_keyed_snapshot_take_timers(eddy_keyed *k, eddy_keyed_snapshot **out,
                                    eddy_err *err);

/*
 * Any one thread, the asynchronous part: writes the whole stream through
 * write(ud, bytes, n), in pieces of up to a few hundred KiB. write returns 0
 * when it took all n bytes, else an error code, which stops the writing and
 * is returned as it is (err then says at which byte). Other failures:
 * EDDY_ENOMEM, and EDDY_EINVAL for a second call (a snapshot is written
 * once). The main thread may go on using k meanwhile, but must not free s.
 */
int eddy_keyed_snapshot_write(eddy_keyed_snapshot *s,
                              int (*write)(void *ud, const void *p, size_t n),
                              void *ud, eddy_err *err);

/* Main thread, once no thread writes s any more. NULL is fine. */
void eddy_keyed_snapshot_free(eddy_keyed_snapshot *s);

/* Where a restore reads a stream from. */
typedef struct eddy_keyed_source {
  /* Lends the next piece of the stream: *n > 0 bytes at *p, valid until
   * the next call; *n 0 at the end (and after it). A non-zero return is an
   * error code, which stops the restore and is returned as it is. */
  int (*next)(void *ud, const void **p, size_t *n);
  void *ud;
  /* Non-zero when the source checks every byte itself and fails (from
   * next) when one is damaged, at the latest when asked for more at the
   * end, as a checkpoint's file reader does with the file's checksum. The
   * stream's own checksum is then skipped: it would be the same check
   * twice. */
  int checked;
} eddy_keyed_source;

/*
 * Main thread: reads a stream from src, to its end, and puts every row and
 * timer whose key group is in k's range into k (rows through
 * eddy_backend_restore_row, timers through eddy_timers_register); the
 * others are skipped, which is how a rescaled operator takes its part of a
 * snapshot. States are registered by name and kind first. Bytes are parsed
 * where src lends them; only a section that runs over the end of a piece
 * is copied.
 *
 * Errors, with a message in err (which may be NULL):
 *   EDDY_ECORRUPT  not a snapshot, truncated or damaged; the message gives
 *                  the byte offset
 *   EDDY_EINVAL    a format version newer than this eddy reads, a max
 *                  parallelism other than k's, a state registered in k
 *                  with another kind
 *   EDDY_ENOMEM, or the code of next or of the backend
 * The checksum (or the source, when it checks the bytes) fails at the end
 * of the stream, after the rows went in: after a failure k holds part of
 * the snapshot and should be discarded.
 */
int eddy_keyed_restore(eddy_keyed *k, const eddy_keyed_source *src, eddy_err *err);

#endif
