/*
 * The state backend interface: what keyed state needs from storage, and
 * nothing about Lua. Both backends (heap, rocksdb) implement the same
 * operations with the same observable behaviour; spec/ runs one conformance
 * suite against each.
 *
 * A row is addressed by (state, key group, key, namespace): key and
 * namespace are canonical MessagePack bytes (the namespace is empty, zero
 * bytes, outside windows). A value, reducing or aggregating row holds one
 * encoded value; a list row holds encoded elements back to back; a map row
 * holds entries addressed by an encoded user key. Everything handed out is
 * sorted the way RocksDB sorts bytes, so both backends list the same things
 * in the same order: rows by (key group, key, namespace), map entries by
 * user key.
 *
 * Memory: every eddy_slice a backend returns points into memory the backend
 * owns and stays valid only until the next call on the same backend (or the
 * next call on the same cursor or snapshot, for those). Callers copy what
 * they keep.
 *
 * Threads: a backend belongs to one thread, the subtask's main thread,
 * which makes every call on it, snapshot_open and snapshot_close included.
 * The one exception is eddy_backend_snapshot_next (and _errmsg), which a
 * checkpoint's writer thread calls while the main thread goes on using the
 * backend; see the snapshot section below.
 */
#ifndef EDDY_STATE_BACKEND_H
#define EDDY_STATE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

typedef enum eddy_state_kind {
  EDDY_STATE_VALUE,
  EDDY_STATE_LIST,
  EDDY_STATE_MAP,
  EDDY_STATE_REDUCING,
  EDDY_STATE_AGGREGATING
} eddy_state_kind;

typedef struct eddy_row {
  uint32_t state; /* id from eddy_backend_register */
  int key_group;  /* within the backend's key-group range */
  const void *key;
  size_t key_len;
  const void *ns;
  size_t ns_len;
} eddy_row;

typedef struct eddy_backend eddy_backend;
typedef struct eddy_backend_cursor eddy_backend_cursor;
typedef struct eddy_backend_snapshot eddy_backend_snapshot;

struct eddy_timers; /* state/timers.h */

typedef struct eddy_backend_config {
  int max_parallelism;
  int first_key_group; /* inclusive range this backend owns */
  int last_key_group;
} eddy_backend_config;

/* ---- creation (one constructor per backend) ---- */

/* A heap backend. Returns EDDY_OK and *out, or an error in err. */
int eddy_heap_backend_new(const eddy_backend_config *cfg, eddy_backend **out,
                          eddy_err *err);

/* Flink's PredefinedOptions: the profiles a RocksDB backend starts from. */
typedef enum eddy_rocksdb_profile {
  EDDY_ROCKSDB_DEFAULT,
  EDDY_ROCKSDB_SPINNING_DISK_OPTIMIZED,
  EDDY_ROCKSDB_SPINNING_DISK_OPTIMIZED_HIGH_MEM,
  EDDY_ROCKSDB_FLASH_SSD_OPTIMIZED
} eddy_rocksdb_profile;

typedef enum eddy_rocksdb_compression {
  EDDY_ROCKSDB_COMPRESSION_UNSET = -1, /* eddy's default: zstd */
  EDDY_ROCKSDB_ZSTD,
  EDDY_ROCKSDB_LZ4,
  EDDY_ROCKSDB_SNAPPY,
  EDDY_ROCKSDB_NO_COMPRESSION
} eddy_rocksdb_compression;

/*
 * What a RocksDB backend is made of, beyond its key groups. An option left
 * unset (0, or -1 where 0 means something) keeps the value of the
 * predefined profile, and where the profile says nothing, RocksDB's own
 * default (Flink's rule), except compression: zstd. Start from
 * eddy_rocksdb_config_init.
 */
typedef struct eddy_rocksdb_config {
  /* The folder the backend's working folder goes in, created if missing;
   * NULL: $TMPDIR/eddy-rocksdb (or /tmp/eddy-rocksdb). */
  const char *dir;
  /* The working folder's name in dir; NULL: a new, unique one. A named
   * folder is locked while the backend lives, so two processes (a job
   * resumed twice) cannot share it; what a crashed run left in it is
   * removed. Either way the folder is removed when the backend is
   * destroyed. */
  const char *name;
  eddy_rocksdb_profile predefined;
  uint64_t write_buffer_size;     /* bytes */
  int max_write_buffer_number;
  uint64_t target_file_size_base; /* bytes */
  uint64_t block_size;            /* bytes */
  int64_t block_cache_size;       /* bytes; -1 unset, 0 no block cache */
  double bloom_filter_bits;       /* bits per key; < 0 unset, 0 no filter */
  int max_background_jobs;
  eddy_rocksdb_compression compression;
  /* A memory budget shared with other backends (the job's), or NULL: the
   * backend sizes its block cache and write buffers from the options. The
   * backend holds a reference while it lives. */
  struct eddy_rocksdb_memory *memory;
  /* Where timers live (Flink's state.backend.rocksdb.timer-service.factory):
   * 0, the default, in RocksDB (ROCKSDB); 1 in memory beside it (HEAP). */
  int timers_in_memory;
} eddy_rocksdb_config;

/*
 * Flink's bounded memory for RocksDB (state.backend.rocksdb.memory.*),
 * shared by every RocksDB backend of a job: one block cache of
 * (3 - write_buffer_ratio) / 3 of total, which also holds index and filter
 * blocks, and write buffers (memtables) of 2 * write_buffer_ratio / 3 of
 * total, divided evenly between `sharers` backends (this RocksDB's C API
 * has no shared write buffer manager). Refcounted: the creator's reference
 * ends with eddy_rocksdb_memory_release, each backend holds its own.
 */
typedef struct eddy_rocksdb_memory eddy_rocksdb_memory;
int eddy_rocksdb_memory_new(uint64_t total, double write_buffer_ratio, int sharers,
                            eddy_rocksdb_memory **out, eddy_err *err);
void eddy_rocksdb_memory_release(eddy_rocksdb_memory *m); /* NULL is fine */

/* Every option unset, the default profile, a unique folder in the default
 * place. */
void eddy_rocksdb_config_init(eddy_rocksdb_config *rcfg);

/*
 * A RocksDB backend with its working folder (see eddy_rocksdb_config).
 * Returns EDDY_OK and *out, or an error in err: EDDY_EIO when the folder
 * cannot be made or RocksDB cannot open in it, EDDY_EAGAIN when another
 * process holds the named folder, EDDY_EINVAL for a bad configuration.
 */
int eddy_rocksdb_backend_new(const eddy_backend_config *cfg,
                             const eddy_rocksdb_config *rcfg, eddy_backend **out,
                             eddy_err *err);

/* The working folder of a RocksDB backend (valid as long as b), NULL for
 * any other backend. */
const char *eddy_rocksdb_backend_path(const eddy_backend *b);

/* ---- native checkpoints of a RocksDB backend (incremental checkpoints,
 * SEMANTICS.md section 10) ---- */

/*
 * Main thread, the synchronous part of a native checkpoint of RocksDB
 * backend b (EDDY_EINVAL for another backend): the memtables are flushed,
 * then RocksDB's checkpoint is made in a new folder chk-<id> of the working
 * folder: hard links of the live SST files, copies of MANIFEST, CURRENT and
 * OPTIONS. *dir gets its path (malloc'd, the caller's); the folder is the
 * caller's to remove, else it goes with the working folder. Its files stay
 * as they are while b goes on changing (RocksDB never writes an SST file
 * again), so another thread may read them meanwhile. EDDY_EIO with
 * RocksDB's words in err.
 */
int eddy_rocksdb_checkpoint(eddy_backend *b, int64_t id, char **dir, eddy_err *err);

/* A folder holding a native checkpoint's files, and its key groups. */
typedef struct eddy_rocksdb_native {
  const char *dir;
  int first_key_group, last_key_group;
} eddy_rocksdb_native;

/*
 * Main thread, before any row went into RocksDB backend b (states may be
 * registered already: they keep their ids): b's rows become those of the
 * native checkpoints srcs[0..n) that lie in b's key-group range, as Flink
 * restores a subtask: the one sharing the most key groups with b becomes
 * b's database as it is (its folder is moved, so it must be on b's file
 * system, e.g. in the working folder; *adopted is its index), with the
 * rows of key groups outside b's range deleted by range; the others are
 * opened read-only and the rows of b's range copied out of them (their
 * folders stay). When the base cannot be moved, every one is copied and
 * *adopted is -1. After a failure b must be destroyed.
 *
 * Timers in the checkpoints' timer families become b's own timers when b
 * keeps them in RocksDB; otherwise they are registered in `timers` (the
 * in-memory service beside b, which may be NULL only when there are none)
 * and their families dropped.
 */
int eddy_rocksdb_restore_native(eddy_backend *b, const eddy_rocksdb_native *srcs, int n,
                                struct eddy_timers *timers, int *adopted, eddy_err *err);

/*
 * Any backend b: the rows of the native checkpoint in folder dir whose key
 * groups are in b's range go into b as a restore puts them
 * (eddy_backend_restore_row, then eddy_backend_restore_done). Each column
 * family holding rows must be a state registered in b, whose kind says how
 * its rows read (the canonical part beside a native one registers them):
 * EDDY_ECORRUPT otherwise. The timers of its timer families go into
 * `timers` (b's timer service). The folder is only read.
 */
int eddy_rocksdb_native_rows(const char *dir, eddy_backend *b, struct eddy_timers *timers,
                             eddy_err *err);

/* Destroys b; its cursors and snapshots must have been closed before. */
void eddy_backend_destroy(eddy_backend *b);

/* The message of the last failed call on b. */
const char *eddy_backend_errmsg(const eddy_backend *b);
const char *eddy_backend_name(const eddy_backend *b);
void eddy_backend_key_groups(const eddy_backend *b, int *max_parallelism,
                             int *first, int *last);

/* ---- state registry ---- */

/* State names starting with this are the timers' (RocksDB keeps its
 * timers in column families of these names, as Flink does). */
#define EDDY_RESERVED_STATE_PREFIX "_timer_state/"

/* Registers a state by name, or finds it if already registered with the
 * same kind. EDDY_EINVAL if the name is taken by another kind or
 * reserved. */
int eddy_backend_register(eddy_backend *b, const char *name,
                          eddy_state_kind kind, uint32_t *id);

uint32_t eddy_backend_state_count(const eddy_backend *b);
/* Name and kind of a registered state id (< state_count). The name stays
 * valid as long as the backend. */
const char *eddy_backend_state_name(const eddy_backend *b, uint32_t id);
eddy_state_kind eddy_backend_state_kind(const eddy_backend *b, uint32_t id);
const char *eddy_state_kind_name(eddy_state_kind kind);

/* ---- rows: value, reducing, aggregating ---- */

/* EDDY_ENOTFOUND if the row is absent. */
int eddy_backend_get(eddy_backend *b, const eddy_row *row, eddy_slice *value);
int eddy_backend_put(eddy_backend *b, const eddy_row *row, const void *value,
                     size_t len);
/* Removes a row of any kind, map entries included; absent is fine. */
int eddy_backend_clear(eddy_backend *b, const eddy_row *row);

/* ---- list rows ---- */

/* Appends one or more encoded elements (concatenated). */
int eddy_backend_list_append(eddy_backend *b, const eddy_row *row,
                             const void *elems, size_t len);
/* The elements back to back; EDDY_ENOTFOUND if the list is empty. */
int eddy_backend_list_get(eddy_backend *b, const eddy_row *row,
                          eddy_slice *elems);
/* Replaces the whole list; len 0 clears it. */
int eddy_backend_list_set(eddy_backend *b, const eddy_row *row,
                          const void *elems, size_t len);

/* ---- map rows ---- */

int eddy_backend_map_get(eddy_backend *b, const eddy_row *row,
                         const void *ukey, size_t ukey_len, eddy_slice *value);
int eddy_backend_map_put(eddy_backend *b, const eddy_row *row,
                         const void *ukey, size_t ukey_len, const void *value,
                         size_t len);
/* Absent is fine. */
int eddy_backend_map_remove(eddy_backend *b, const eddy_row *row,
                            const void *ukey, size_t ukey_len);
/* All entries as user key, value, user key, value... sorted by user key;
 * EDDY_ENOTFOUND if the map is empty. */
int eddy_backend_map_entries(eddy_backend *b, const eddy_row *row,
                             eddy_slice *entries);

/* ---- iteration over every row of a state ---- */

/* A cursor sees the rows as they were when it was opened, in the order
 * (key group, key, namespace). */
int eddy_backend_cursor_open(eddy_backend *b, uint32_t state,
                             eddy_backend_cursor **out);
/* Fills row (state, key group, key, namespace) and value (as get,
 * list_get or map_entries would give it). EDDY_EEOF after the last row. */
int eddy_backend_cursor_next(eddy_backend_cursor *c, eddy_row *row,
                             eddy_slice *value);
void eddy_backend_cursor_close(eddy_backend_cursor *c);

/* ---- snapshots: the state of a checkpoint ----
 *
 * A checkpoint of a keyed subtask has a synchronous part on the main thread
 * (open a snapshot: the rows are frozen as they are now) and an
 * asynchronous part on a writer thread (read the frozen rows with next,
 * serialize, compress, write), during which the main thread goes on
 * processing records and changing the backend. A snapshot never sees those
 * changes. Any number of snapshots may be open at once, each read by its
 * own thread.
 *
 * Handing a snapshot to the writer thread and back is the caller's
 * synchronisation (a queue with a lock, pthread_create and pthread_join):
 * next must not run at the same time as close of the same snapshot, nor
 * two nexts on one snapshot. States registered after the open are not in
 * the snapshot.
 */

/* Main thread. Freezes every row of b as it is now. Cheap: no row is
 * copied (the heap backend copies its tables' row pointers, a few
 * milliseconds per million rows, and copies a row later, the first time
 * it changes). EDDY_ENOMEM leaves b as it was (message in
 * eddy_backend_errmsg). */
int eddy_backend_snapshot_open(eddy_backend *b, eddy_backend_snapshot **out);

/*
 * Any one thread at a time per snapshot, concurrently with the main thread
 * using the backend. The next frozen row: rows come in ascending key group;
 * within a key group in no particular order (the heap backend gives them
 * state by state). row->state is the id the state had at the open; value
 * is what get, list_get or map_entries would have given at the open (map
 * entries sorted by user key). The slices stay valid until the next call on
 * s. EDDY_EEOF after the last row (and on every call after that);
 * EDDY_ENOMEM with a message in eddy_backend_snapshot_errmsg.
 */
int eddy_backend_snapshot_next(eddy_backend_snapshot *s, eddy_row *row,
                               eddy_slice *value);

/* The message of the last failed next on s; read it on the thread that
 * called next. */
const char *eddy_backend_snapshot_errmsg(const eddy_backend_snapshot *s);

/* Main thread, once no thread reads s any more: releases s, and the rows
 * that only s still kept alive. NULL is fine. */
void eddy_backend_snapshot_close(eddy_backend_snapshot *s);

/* ---- restoring: whole rows in bulk ----
 *
 * How a restore (eddy_keyed_restore) puts rows back: whole rows as a
 * snapshot gives them, which a backend may hold back and put in in bulk.
 * Between the first restore_row and restore_done, b takes no other call.
 */

/*
 * Sets the whole row to payload, in the form eddy_backend_snapshot_next
 * gives (a value; a list's elements back to back; a map's user key,
 * value, ... one MessagePack value each), replacing what it held; the
 * bytes are copied. len must be > 0, a map's payload whole entries
 * (EDDY_EINVAL). The row may stay invisible until restore_done. EDDY_ENOMEM
 * or EDDY_ELIMIT with a message in eddy_backend_errmsg; rows handed over
 * before may then be lost too.
 */
int eddy_backend_restore_row(eddy_backend *b, const eddy_row *row,
                             const void *payload, size_t len);

/* A state's footprint in a backend, for metrics; -1 where not known. The
 * figures are RocksDB's estimates (rocksdb.estimate-num-keys,
 * live-sst-files-size, cur-size-all-mem-tables of the state's column
 * family); the block cache is shared by a backend's states, so its usage
 * is the backend's. */
typedef struct eddy_state_metrics {
  int64_t estimated_keys;
  int64_t live_sst_bytes;
  int64_t memtable_bytes;
  int64_t block_cache_bytes;
} eddy_state_metrics;

/* The timer service the backend keeps in its own storage (RocksDB with
 * timers in RocksDB, the default), owned by b; NULL when timers are kept
 * in memory beside it (eddy_timers_new). */
struct eddy_timers *eddy_backend_timers(eddy_backend *b);

/* Fills m for registered state `state`; EDDY_EUNSUPPORTED when the backend
 * keeps no such figures (the heap backend), m then all -1. */
int eddy_backend_state_metrics(eddy_backend *b, uint32_t state, eddy_state_metrics *m);

/* Ends a restore: every row handed over is in b. Call it after any
 * restore_row, failed ones included. On EDDY_ENOMEM (message in
 * eddy_backend_errmsg) some rows are lost, and nothing is left over. */
int eddy_backend_restore_done(eddy_backend *b);

#endif
