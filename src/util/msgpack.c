/*
 * MessagePack writer and reader: see msgpack.h for the canonical rules.
 * Byte layouts follow the MessagePack specification; multi-byte numbers are
 * big-endian.
 */
#include "util/msgpack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int put1(eddy_buf *b, unsigned char tag)
{
  return eddy_buf_putc(b, tag);
}

static int put_be(eddy_buf *b, unsigned char tag, uint64_t v, int nbytes)
{
  int rc = eddy_buf_reserve(b, 1 + (size_t)nbytes);
  if (rc != EDDY_OK)
    return rc;
  unsigned char *p = b->data + b->len;
  *p++ = tag;
  for (int i = nbytes - 1; i >= 0; i--)
    *p++ = (unsigned char)(v >> (8 * i));
  b->len += 1 + (size_t)nbytes;
  return EDDY_OK;
}

int eddy_mp_write_nil(eddy_buf *b) { return put1(b, 0xc0); }

int eddy_mp_write_bool(eddy_buf *b, int v) { return put1(b, v ? 0xc3 : 0xc2); }

int eddy_mp_write_int(eddy_buf *b, int64_t v)
{
  if (v >= 0) {
    uint64_t u = (uint64_t)v;
    if (u < 128)
      return put1(b, (unsigned char)u);
    if (u <= 0xff)
      return put_be(b, 0xcc, u, 1);
    if (u <= 0xffff)
      return put_be(b, 0xcd, u, 2);
    if (u <= 0xffffffffu)
      return put_be(b, 0xce, u, 4);
    return put_be(b, 0xcf, u, 8);
  }
  if (v >= -32)
    return put1(b, (unsigned char)(int8_t)v);
  if (v >= INT8_MIN)
    return put_be(b, 0xd0, (uint8_t)(int8_t)v, 1);
  if (v >= INT16_MIN)
    return put_be(b, 0xd1, (uint16_t)(int16_t)v, 2);
  if (v >= INT32_MIN)
    return put_be(b, 0xd2, (uint32_t)(int32_t)v, 4);
  return put_be(b, 0xd3, (uint64_t)v, 8);
}

int eddy_mp_write_float(eddy_buf *b, double v)
{
  uint64_t bits;
  if (isnan(v))
    bits = UINT64_C(0x7ff8000000000000); /* one NaN, so equal values give equal bytes */
  else
    memcpy(&bits, &v, sizeof bits);
  return put_be(b, 0xcb, bits, 8);
}

int eddy_mp_write_str(eddy_buf *b, const void *s, size_t len)
{
  int rc;
  if (len > 0xffffffffu)
    return EDDY_ELIMIT;
  if (len < 32)
    rc = put1(b, (unsigned char)(0xa0 | len));
  else if (len <= 0xff)
    rc = put_be(b, 0xd9, len, 1);
  else if (len <= 0xffff)
    rc = put_be(b, 0xda, len, 2);
  else
    rc = put_be(b, 0xdb, len, 4);
  if (rc != EDDY_OK)
    return rc;
  return eddy_buf_append(b, s, len);
}

int eddy_mp_write_array(eddy_buf *b, uint32_t n)
{
  if (n < 16)
    return put1(b, (unsigned char)(0x90 | n));
  if (n <= 0xffff)
    return put_be(b, 0xdc, n, 2);
  return put_be(b, 0xdd, n, 4);
}

int eddy_mp_write_map(eddy_buf *b, uint32_t n)
{
  if (n < 16)
    return put1(b, (unsigned char)(0x80 | n));
  if (n <= 0xffff)
    return put_be(b, 0xde, n, 2);
  return put_be(b, 0xdf, n, 4);
}

int eddy_mp_compare(const void *a, size_t alen, const void *b, size_t blen)
{
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c != 0)
    return c;
  return (alen > blen) - (alen < blen);
}

/* qsort has no context argument; the pairs carry offsets, so sort pointers
 * into a small array of (base, pair) instead. */
typedef struct sort_item {
  const unsigned char *key;
  const eddy_mp_pair *pair;
} sort_item;

static int cmp_items(const void *x, const void *y)
{
  const sort_item *a = x, *b = y;
  return eddy_mp_compare(a->key, a->pair->key_len, b->key, b->pair->key_len);
}

int eddy_mp_finish_map(eddy_buf *b, size_t start, eddy_mp_pair *pairs,
                       uint32_t n, eddy_buf *scratch)
{
  size_t body = b->len - start;
  int rc;

  eddy_buf_reset(scratch);
  if ((rc = eddy_buf_append(scratch, b->data + start, body)) != EDDY_OK)
    return rc;

  sort_item small[16];
  sort_item *items = small;
  if (n > 16) {
    items = malloc(sizeof *items * n);
    if (items == NULL)
      return EDDY_ENOMEM;
  }
  for (uint32_t i = 0; i < n; i++) {
    items[i].key = scratch->data + (pairs[i].off - start);
    items[i].pair = &pairs[i];
  }
  /* Records are small maps, mostly; insertion sort beats qsort there. */
  if (n <= 16) {
    for (uint32_t i = 1; i < n; i++) {
      sort_item it = items[i];
      uint32_t j = i;
      while (j > 0 && cmp_items(&items[j - 1], &it) > 0) {
        items[j] = items[j - 1];
        j--;
      }
      items[j] = it;
    }
  } else {
    qsort(items, n, sizeof *items, cmp_items);
  }
  for (uint32_t i = 1; i < n; i++) {
    if (cmp_items(&items[i - 1], &items[i]) == 0) {
      rc = EDDY_EINVAL;
      goto done;
    }
  }

  /* room for the header (at most 5 bytes) first, so that a failure leaves
   * b as it was */
  if ((rc = eddy_buf_reserve(b, 5)) != EDDY_OK)
    goto done;
  b->len = start;
  eddy_mp_write_map(b, n);
  for (uint32_t i = 0; i < n; i++) {
    memcpy(b->data + b->len, items[i].key, items[i].pair->len);
    b->len += items[i].pair->len;
  }
done:
  if (items != small)
    free(items);
  return rc;
}

void eddy_mp_reader_init(eddy_mp_reader *r, const void *data, size_t len)
{
  r->start = data;
  r->p = data;
  r->end = r->p + len;
}

static uint64_t get_be(const unsigned char *p, int nbytes)
{
  uint64_t v = 0;
  for (int i = 0; i < nbytes; i++)
    v = (v << 8) | p[i];
  return v;
}

int eddy_mp_read(eddy_mp_reader *r, eddy_mp_item *it)
{
  const unsigned char *p = r->p;
  size_t avail = (size_t)(r->end - p);
  if (avail == 0)
    return EDDY_EEOF;
  unsigned char tag = *p;
  size_t hdr = 1;   /* header bytes, tag included */
  size_t extra = 0; /* payload bytes after the header (strings) */
  uint64_t len;

#define NEED(n) do { if (avail < (n)) return EDDY_EFORMAT; } while (0)

  if (tag <= 0x7f) {
    it->type = EDDY_MP_INT;
    it->v.i = tag;
  } else if (tag >= 0xe0) {
    it->type = EDDY_MP_INT;
    it->v.i = (int8_t)tag;
  } else if ((tag & 0xf0) == 0x80) {
    it->type = EDDY_MP_MAP;
    it->v.n = tag & 0x0f;
  } else if ((tag & 0xf0) == 0x90) {
    it->type = EDDY_MP_ARRAY;
    it->v.n = tag & 0x0f;
  } else if ((tag & 0xe0) == 0xa0) {
    it->type = EDDY_MP_STR;
    extra = tag & 0x1f;
  } else {
    switch (tag) {
    case 0xc0: it->type = EDDY_MP_NIL; break;
    case 0xc2: it->type = EDDY_MP_BOOL; it->v.b = 0; break;
    case 0xc3: it->type = EDDY_MP_BOOL; it->v.b = 1; break;
    case 0xc4: case 0xd9: NEED(2); hdr = 2; extra = p[1]; it->type = EDDY_MP_STR; break;
    case 0xc5: case 0xda: NEED(3); hdr = 3; extra = get_be(p + 1, 2); it->type = EDDY_MP_STR; break;
    case 0xc6: case 0xdb: NEED(5); hdr = 5; extra = get_be(p + 1, 4); it->type = EDDY_MP_STR; break;
    case 0xca: {
      NEED(5);
      hdr = 5;
      uint32_t bits = (uint32_t)get_be(p + 1, 4);
      float f;
      memcpy(&f, &bits, sizeof f);
      it->type = EDDY_MP_FLOAT;
      it->v.f = f;
      break;
    }
    case 0xcb: {
      NEED(9);
      hdr = 9;
      uint64_t bits = get_be(p + 1, 8);
      memcpy(&it->v.f, &bits, sizeof bits);
      it->type = EDDY_MP_FLOAT;
      break;
    }
    case 0xcc: NEED(2); hdr = 2; it->type = EDDY_MP_INT; it->v.i = p[1]; break;
    case 0xcd: NEED(3); hdr = 3; it->type = EDDY_MP_INT; it->v.i = (int64_t)get_be(p + 1, 2); break;
    case 0xce: NEED(5); hdr = 5; it->type = EDDY_MP_INT; it->v.i = (int64_t)get_be(p + 1, 4); break;
    case 0xcf:
      NEED(9);
      hdr = 9;
      len = get_be(p + 1, 8);
      if (len > (uint64_t)INT64_MAX)
        return EDDY_ELIMIT;
      it->type = EDDY_MP_INT;
      it->v.i = (int64_t)len;
      break;
    case 0xd0: NEED(2); hdr = 2; it->type = EDDY_MP_INT; it->v.i = (int8_t)p[1]; break;
    case 0xd1: NEED(3); hdr = 3; it->type = EDDY_MP_INT; it->v.i = (int16_t)get_be(p + 1, 2); break;
    case 0xd2: NEED(5); hdr = 5; it->type = EDDY_MP_INT; it->v.i = (int32_t)get_be(p + 1, 4); break;
    case 0xd3: NEED(9); hdr = 9; it->type = EDDY_MP_INT; it->v.i = (int64_t)get_be(p + 1, 8); break;
    case 0xdc: NEED(3); hdr = 3; it->type = EDDY_MP_ARRAY; it->v.n = (uint32_t)get_be(p + 1, 2); break;
    case 0xdd: NEED(5); hdr = 5; it->type = EDDY_MP_ARRAY; it->v.n = (uint32_t)get_be(p + 1, 4); break;
    case 0xde: NEED(3); hdr = 3; it->type = EDDY_MP_MAP; it->v.n = (uint32_t)get_be(p + 1, 2); break;
    case 0xdf: NEED(5); hdr = 5; it->type = EDDY_MP_MAP; it->v.n = (uint32_t)get_be(p + 1, 4); break;
    case 0xc7: case 0xc8: case 0xc9:
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
      return EDDY_EUNSUPPORTED; /* ext types: nothing in eddy writes them */
    default:
      return EDDY_EFORMAT; /* 0xc1 is never used */
    }
  }
  NEED(hdr);
  if (it->type == EDDY_MP_STR) {
    if (avail - hdr < extra)
      return EDDY_EFORMAT;
    it->v.s.ptr = (const char *)p + hdr;
    it->v.s.len = (uint32_t)extra;
  }
#undef NEED
  r->p = p + hdr + extra;
  return EDDY_OK;
}

/* Skips one value without recursion, so that no input can exhaust the C
 * stack; depth is tracked only when the caller asks for a limit. */
static int skip_value(eddy_mp_reader *r, int max_depth)
{
  const unsigned char *save = r->p;
  /* remaining[d] = items still to read at nesting depth d */
  uint64_t remaining[EDDY_MP_MAX_DEPTH + 2];
  int depth = 0;
  remaining[0] = 1;
  while (depth >= 0) {
    if (remaining[depth] == 0) {
      depth--;
      continue;
    }
    remaining[depth]--;
    eddy_mp_item it;
    int rc = eddy_mp_read(r, &it);
    if (rc != EDDY_OK) {
      r->p = save;
      return rc == EDDY_EEOF ? EDDY_EFORMAT : rc;
    }
    if (it.type == EDDY_MP_ARRAY || it.type == EDDY_MP_MAP) {
      uint64_t n = it.type == EDDY_MP_MAP ? 2 * (uint64_t)it.v.n : it.v.n;
      /* an empty container is a level too, as it is for the encoder */
      if (depth + 1 > max_depth) {
        r->p = save;
        return EDDY_ELIMIT;
      }
      if (n == 0)
        continue;
      /* Every element takes at least one byte: a count beyond the input
       * is a truncated value, found here rather than after a long walk. */
      if (n > (uint64_t)(r->end - r->p)) {
        r->p = save;
        return EDDY_EFORMAT;
      }
      remaining[++depth] = n;
    }
  }
  return EDDY_OK;
}

int eddy_mp_skip(eddy_mp_reader *r)
{
  return skip_value(r, EDDY_MP_MAX_DEPTH);
}

int eddy_mp_value_len(const void *data, size_t len, size_t *value_len)
{
  eddy_mp_reader r;
  eddy_mp_reader_init(&r, data, len);
  int rc = skip_value(&r, EDDY_MP_MAX_DEPTH);
  if (rc == EDDY_OK && value_len)
    *value_len = eddy_mp_reader_offset(&r);
  return rc;
}
