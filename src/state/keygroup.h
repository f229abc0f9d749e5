/*
 * Key groups: the unit in which keyed state is stored, snapshotted and moved
 * when a job is rescaled. The arithmetic is Flink's (KeyGroupRangeAssignment
 * and MathUtils), and so is the hash of keys that have a Java counterpart,
 * so that a key lands in the same key group and subtask as in Flink
 * (SEMANTICS.md, eddy's choice 1 and section 1).
 */
#ifndef EDDY_STATE_KEYGROUP_H
#define EDDY_STATE_KEYGROUP_H

#include <stddef.h>
#include <stdint.h>

#define EDDY_MAX_PARALLELISM_LOWER 128
#define EDDY_MAX_PARALLELISM_UPPER 32768

/* Flink's MathUtils.murmurHash: never negative. */
int32_t eddy_murmur_final(int32_t code);

/*
 * The Java hashCode eddy assigns to a key, given its canonical MessagePack
 * bytes: Long.hashCode for integers, Double.hashCode for floats,
 * Boolean.hashCode, String.hashCode over UTF-16 code units, a TupleN-style
 * combination for arrays, and the low 32 bits of xxh3 for maps.
 * Returns EDDY_EINVAL for nil (a key must not be nil) and EDDY_EFORMAT for
 * bytes that are not one complete value.
 */
int eddy_key_hash(const void *key, size_t len, int32_t *hash);

/* kg = murmur_final(hash) % max_parallelism; same returns as eddy_key_hash. */
int eddy_key_group(const void *key, size_t len, int max_parallelism, int *key_group);

/* Flink's default max parallelism for a parallelism, or -1 if p is not in
 * (0, 32768]. */
int eddy_default_max_parallelism(int parallelism);

/* The inclusive key-group range of subtask index of an operator. The caller
 * guarantees 0 < parallelism <= max_parallelism <= 32768 and
 * 0 <= index < parallelism (see eddy_key_group_check). */
void eddy_key_group_range(int max_parallelism, int parallelism, int index,
                          int *first, int *last);

/* The subtask that owns key_group. */
int eddy_operator_index(int key_group, int max_parallelism, int parallelism);

/* Checks the preconditions above; returns NULL or a message saying which
 * one fails. */
const char *eddy_key_group_check(int max_parallelism, int parallelism);

#endif
