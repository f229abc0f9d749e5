/*
 * MessagePack, the byte format of every record on a channel, every key and
 * every state value. eddy writes it canonically: integers in their shortest
 * form (unsigned forms for non-negative values), floats always as float64
 * with one NaN, strings always as str, and map pairs sorted by the bytes of
 * their encoded keys. Equal values therefore give equal bytes, which is what
 * lets a key's bytes address its state.
 *
 * The reader accepts any well-formed MessagePack (float32, bin, non-minimal
 * integers) so that foreign data can be read, but refuses ext types and
 * integers outside int64.
 */
#ifndef EDDY_UTIL_MSGPACK_H
#define EDDY_UTIL_MSGPACK_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Deepest nesting of arrays and maps that eddy stores or decodes. */
#define EDDY_MP_MAX_DEPTH 100

typedef enum eddy_mp_type {
  EDDY_MP_NIL,
  EDDY_MP_BOOL,
  EDDY_MP_INT,
  EDDY_MP_FLOAT,
  EDDY_MP_STR, /* str and bin both read as STR: Lua strings are bytes */
  EDDY_MP_ARRAY,
  EDDY_MP_MAP
} eddy_mp_type;

typedef struct eddy_mp_item {
  eddy_mp_type type;
  union {
    int b;
    int64_t i;
    double f;
    struct {
      const char *ptr; /* points into the reader's input */
      uint32_t len;
    } s;
    uint32_t n; /* element count of an array, pair count of a map */
  } v;
} eddy_mp_item;

/* ---- writing (appends to b; EDDY_ENOMEM on allocation failure) ---- */

int eddy_mp_write_nil(eddy_buf *b);
int eddy_mp_write_bool(eddy_buf *b, int v);
int eddy_mp_write_int(eddy_buf *b, int64_t v);
int eddy_mp_write_float(eddy_buf *b, double v);
int eddy_mp_write_str(eddy_buf *b, const void *s, size_t len);
int eddy_mp_write_array(eddy_buf *b, uint32_t n);
int eddy_mp_write_map(eddy_buf *b, uint32_t n);

/* Where one key/value pair of a map under construction lies in the buffer:
 * offset of the key, length of the encoded key, length of key plus value. */
typedef struct eddy_mp_pair {
  size_t off;
  size_t key_len;
  size_t len;
} eddy_mp_pair;

/*
 * Finishes a canonical map. The caller has written n pairs back to back from
 * offset start (key, then value, no map header) and noted each in pairs[].
 * This sorts the pairs by their key bytes and rewrites b from start as a map
 * header followed by the sorted pairs. scratch is a caller-owned buffer used
 * for the copy (reusing one avoids an allocation per map).
 * Returns EDDY_EINVAL if two keys encode to the same bytes.
 */
int eddy_mp_finish_map(eddy_buf *b, size_t start, eddy_mp_pair *pairs,
                       uint32_t n, eddy_buf *scratch);

/* Orders two encoded values as RocksDB's bytewise comparator does. */
int eddy_mp_compare(const void *a, size_t alen, const void *b, size_t blen);

/* ---- reading ---- */

typedef struct eddy_mp_reader {
  const unsigned char *start;
  const unsigned char *p;
  const unsigned char *end;
} eddy_mp_reader;

void eddy_mp_reader_init(eddy_mp_reader *r, const void *data, size_t len);

static inline size_t eddy_mp_reader_offset(const eddy_mp_reader *r)
{
  return (size_t)(r->p - r->start);
}

static inline int eddy_mp_reader_done(const eddy_mp_reader *r)
{
  return r->p >= r->end;
}

/*
 * Reads the next item header (for arrays and maps: only the count; the
 * elements follow). Returns EDDY_OK, EDDY_EEOF at the end of input,
 * EDDY_EFORMAT for a truncated or invalid item, EDDY_EUNSUPPORTED for ext
 * types, EDDY_ELIMIT for an unsigned integer above INT64_MAX. On failure the
 * reader does not move.
 */
int eddy_mp_read(eddy_mp_reader *r, eddy_mp_item *item);

/* Skips one whole value, nested contents included. Same returns as read. */
int eddy_mp_skip(eddy_mp_reader *r);

/*
 * Checks that data starts with one complete, well-formed value no deeper
 * than EDDY_MP_MAX_DEPTH, and gives its length. Returns EDDY_OK or the
 * reader's codes (EDDY_ELIMIT for depth).
 */
int eddy_mp_value_len(const void *data, size_t len, size_t *value_len);

#endif
