/*
 * The canonical snapshot suite (test_snapshot.c) with keyed states made on
 * the RocksDB and the heap backend in turn: every round trip, rescale and
 * damaged stream there, from each backend into each.
 */
#define SUITE_ROCKSDB 1
#include "test_snapshot.c"
