/*
 * Timers kept in RocksDB, Flink's ROCKSDB timer-service factory (the
 * default of its RocksDB backend): each kind of timer is a column family
 * of the backend's database whose keys are the timers and whose values are
 * empty, so the timers are part of every native (incremental) checkpoint.
 * Only rocksdb.c, which owns the families, creates and attaches them.
 *
 * A timer's row key is
 *   key group (2 bytes, big endian) | timestamp (8 bytes, big endian, sign
 *   bit flipped) | key | namespace
 * RocksDB's bytewise order of these keys is eddy's firing order within a
 * key group (timestamp, key bytes, namespace bytes: MessagePack values are
 * self-delimiting, so no key is a prefix of another), and a key group is a
 * contiguous range, which is what rescaling copies and drops.
 */
#ifndef EDDY_STATE_ROCKSDB_TIMERS_H
#define EDDY_STATE_ROCKSDB_TIMERS_H

#include <rocksdb/c.h>

#include "state/timers.h"
#include "util/buf.h"

/* Flink names the families of its default timer service this way. */
#define EDDY_RDB_TIMER_PREFIX "_timer_state/"
#define EDDY_RDB_TIMER_CF_EVENT "_timer_state/event_user-timers"
#define EDDY_RDB_TIMER_CF_PROCESSING "_timer_state/processing_user-timers"

/* A timer service for the range, not attached to a database yet; where
 * names the database in messages (copied). */
int eddy_rdb_timers_new(int max_parallelism, int first_key_group, int last_key_group,
                        const char *where, eddy_timers **out, eddy_err *err);

/* Points t at the families cfs[EDDY_TIMER_EVENT] and
 * cfs[EDDY_TIMER_PROCESSING] of db (which stay the caller's, as do wo) and
 * reads the first timers of every key group of the range: after an open or
 * a restore. EDDY_EIO with the message in t. */
int eddy_rdb_timers_attach(eddy_timers *t, rocksdb_t *db, rocksdb_writeoptions_t *wo,
                           rocksdb_column_family_handle_t *const cfs[2]);

/* Forgets the database before it closes; t fails every call until attached
 * again. */
void eddy_rdb_timers_detach(eddy_timers *t);

/* The row key of a timer, into out (reset first). */
int eddy_rdb_timer_row(eddy_buf *out, const eddy_timer *timer);

/* A row key read back: the slices point into row. EDDY_ECORRUPT when it is
 * not one. */
int eddy_rdb_timer_parse(const void *row, size_t n, eddy_timer *out);

/* The kind of the family called name (a timer family or not): 1 and *kind,
 * or 0. */
int eddy_rdb_timer_family(const char *name, eddy_timer_kind *kind);

#endif
