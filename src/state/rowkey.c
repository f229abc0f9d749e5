/*
 * The RocksDB row key (see rowkey.h for the layout and why it sorts the way
 * backend.h promises).
 */
#include "state/rowkey.h"

#include <stdint.h>

#include "util/msgpack.h"

int eddy_rowkey_is_value(const void *p, size_t n)
{
  size_t len;
  return n > 0 && eddy_mp_value_len(p, n, &len) == EDDY_OK && len == n;
}

int eddy_rowkey_prefix(eddy_buf *out, int key_group, const void *key, size_t key_len,
                       const void *ns, size_t ns_len)
{
  eddy_buf_reset(out);
  int rc = eddy_buf_reserve(out, 3 + key_len + ns_len);
  if (rc != EDDY_OK)
    return rc;
  unsigned char *p = out->data;
  p[0] = (unsigned char)(key_group >> 8);
  p[1] = (unsigned char)key_group;
  memcpy(p + 2, key, key_len);
  p += 2 + key_len;
  if (ns_len == 0) {
    *p++ = EDDY_ROWKEY_NO_NS;
  } else {
    *p++ = EDDY_ROWKEY_NS;
    memcpy(p, ns, ns_len);
    p += ns_len;
  }
  out->len = (size_t)(p - out->data);
  return EDDY_OK;
}

int eddy_rowkey_parse(const void *data, size_t n, int with_ukey, eddy_rowkey *out)
{
  const unsigned char *p = data, *end = p + n;
  size_t len;
  if (n < 4)
    return EDDY_ECORRUPT;
  out->key_group = p[0] << 8 | p[1];
  p += 2;
  if (eddy_mp_value_len(p, (size_t)(end - p), &len) != EDDY_OK || len == (size_t)(end - p))
    return EDDY_ECORRUPT;
  out->key = (eddy_slice){p, len};
  p += len;
  unsigned char marker = *p++;
  if (marker == EDDY_ROWKEY_NO_NS) {
    out->ns = (eddy_slice){p, 0}; /* not NULL: callers may memcmp it */
  } else if (marker == EDDY_ROWKEY_NS && p < end &&
             eddy_mp_value_len(p, (size_t)(end - p), &len) == EDDY_OK) {
    out->ns = (eddy_slice){p, len};
    p += len;
  } else {
    return EDDY_ECORRUPT;
  }
  out->prefix_len = (size_t)(p - (const unsigned char *)data);
  out->ukey = (eddy_slice){NULL, 0};
  if (!with_ukey)
    return p == end ? EDDY_OK : EDDY_ECORRUPT;
  if (!eddy_rowkey_is_value(p, (size_t)(end - p)))
    return EDDY_ECORRUPT;
  out->ukey = (eddy_slice){p, (size_t)(end - p)};
  return EDDY_OK;
}

size_t eddy_rowkey_successor(unsigned char *p, size_t n)
{
  while (n > 0 && p[n - 1] == 0xff)
    n--;
  if (n > 0)
    p[n - 1]++;
  return n;
}
