/*
 * The row key of the RocksDB backend (DESIGN.md, State): how a row's
 * address (key group, key, namespace[, map user key]) becomes one byte
 * string, so that RocksDB's bytewise order is the order backend.h promises
 * and a prefix seek finds the entries of one map row.
 *
 *   key group   2 bytes, big endian (so rows sort by key group first, and
 *               a key group's rows are one contiguous range)
 *   key         the canonical MessagePack key: one whole value
 *   namespace   0x00 when the row has none; else 0x01 and one whole
 *               MessagePack value
 *   user key    map entries only: one whole MessagePack value
 *
 * MessagePack values are self-delimiting, so no encoded value is a prefix
 * of another and the concatenation is unambiguous: comparing two row keys
 * bytewise compares the key groups, then the keys, then the namespaces,
 * then the user keys, each bytewise. The namespace takes a marker byte
 * (like Flink's VoidNamespace, which is serialized too) because an empty
 * namespace of zero bytes would make the row (k, none) a prefix of every
 * row (k, ns): a map row's prefix seek would find the entries of other
 * namespaces, and clear would have to tell them apart. With the marker,
 * "no namespace" sorts before every namespace, as in the heap backend.
 */
#ifndef EDDY_STATE_ROWKEY_H
#define EDDY_STATE_ROWKEY_H

#include <stddef.h>

#include "util/buf.h"

#define EDDY_ROWKEY_NO_NS 0x00
#define EDDY_ROWKEY_NS 0x01

/* A row key taken apart; the slices point into the parsed bytes. */
typedef struct eddy_rowkey {
  int key_group;
  eddy_slice key;
  eddy_slice ns;   /* len 0: no namespace (data still points into the key) */
  eddy_slice ukey; /* len 0 unless parsed with a user key */
  size_t prefix_len; /* bytes before the user key: the map row's prefix */
} eddy_rowkey;

/* Whether p holds exactly one whole MessagePack value (what a key, a
 * namespace and a user key must be). */
int eddy_rowkey_is_value(const void *p, size_t n);

/* Replaces out's contents with the prefix of a row: key group, key and
 * namespace (ns_len 0: none). EDDY_ENOMEM. The caller checked that the key
 * and namespace are whole values (eddy_rowkey_is_value). */
int eddy_rowkey_prefix(eddy_buf *out, int key_group, const void *key, size_t key_len,
                       const void *ns, size_t ns_len);

/* Splits a stored row key. with_ukey: a map entry's key, whose user key
 * follows the namespace. EDDY_ECORRUPT for bytes that are not a row key of
 * that shape. */
int eddy_rowkey_parse(const void *p, size_t n, int with_ukey, eddy_rowkey *out);

/* Turns the n bytes at p into the least byte string greater than every
 * string that starts with them (an exclusive upper bound for a prefix
 * seek) and returns its length; 0 when there is none (all bytes 0xff). */
size_t eddy_rowkey_successor(unsigned char *p, size_t n);

#endif
