/*
 * Key-group assignment, bit for bit as Flink computes it: Java int
 * arithmetic (wrapping multiply, logical shifts) is done on uint32_t and
 * converted back, because signed overflow is undefined in C.
 */
#include "state/keygroup.h"

#include <string.h>
#include <xxhash.h>

#include "util/err.h"
#include "util/msgpack.h"

static uint32_t rotl32(uint32_t x, int r)
{
  return (x << r) | (x >> (32 - r));
}

int32_t eddy_murmur_final(int32_t code)
{
  uint32_t c = (uint32_t)code;
  c *= 0xcc9e2d51u;
  c = rotl32(c, 15);
  c *= 0x1b873593u;
  c = rotl32(c, 13);
  c = c * 5 + 0xe6546b64u;
  c ^= 4;
  c ^= c >> 16;
  c *= 0x85ebca6bu;
  c ^= c >> 13;
  c *= 0xc2b2ae35u;
  c ^= c >> 16;
  int32_t s = (int32_t)c;
  if (s >= 0)
    return s;
  if (s != INT32_MIN)
    return -s;
  return 0;
}

static uint32_t long_hash(uint64_t bits)
{
  return (uint32_t)(bits ^ (bits >> 32));
}

/* String.hashCode over the UTF-16 code units of UTF-8 text. A byte that does
 * not start a valid sequence counts as one unit of its own value. */
static uint32_t string_hash(const unsigned char *s, size_t n)
{
  uint32_t h = 0;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    uint32_t cp;
    size_t len;
    if (c < 0x80) {
      h = 31 * h + c;
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      cp = c & 0x1f;
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      cp = c & 0x0f;
      len = 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      cp = c & 0x07;
      len = 4;
    } else {
      h = 31 * h + c;
      i++;
      continue;
    }
    int ok = i + len <= n;
    for (size_t k = 1; ok && k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        ok = 0;
      else
        cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    /* reject overlong forms, surrogates and values above U+10FFFF */
    if (ok && ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff))
      ok = 0;
    if (!ok) {
      h = 31 * h + c;
      i++;
      continue;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      h = 31 * h + (0xd800 + (cp >> 10));
      h = 31 * h + (0xdc00 + (cp & 0x3ff));
    } else {
      h = 31 * h + cp;
    }
    i += len;
  }
  return h;
}

/* Hash of the value at the reader; arrays recurse (bounded by the depth
 * check the caller did with eddy_mp_value_len). */
static int hash_value(eddy_mp_reader *r, uint32_t *out)
{
  const unsigned char *begin = r->p;
  eddy_mp_item it;
  int rc = eddy_mp_read(r, &it);
  if (rc != EDDY_OK)
    return rc == EDDY_EEOF ? EDDY_EFORMAT : rc;
  switch (it.type) {
  case EDDY_MP_NIL:
    return EDDY_EINVAL;
  case EDDY_MP_BOOL:
    *out = it.v.b ? 1231 : 1237;
    return EDDY_OK;
  case EDDY_MP_INT:
    *out = long_hash((uint64_t)it.v.i);
    return EDDY_OK;
  case EDDY_MP_FLOAT: {
    uint64_t bits;
    double f = it.v.f;
    if (f != f)
      bits = UINT64_C(0x7ff8000000000000);
    else
      memcpy(&bits, &f, sizeof bits);
    *out = long_hash(bits);
    return EDDY_OK;
  }
  case EDDY_MP_STR:
    *out = string_hash((const unsigned char *)it.v.s.ptr, it.v.s.len);
    return EDDY_OK;
  case EDDY_MP_ARRAY: {
    uint32_t h = 0;
    for (uint32_t i = 0; i < it.v.n; i++) {
      uint32_t eh;
      if ((rc = hash_value(r, &eh)) != EDDY_OK)
        return rc;
      h = (i == 0) ? eh : 31 * h + eh;
    }
    *out = h;
    return EDDY_OK;
  }
  case EDDY_MP_MAP: {
    r->p = begin;
    if ((rc = eddy_mp_skip(r)) != EDDY_OK)
      return rc;
    *out = (uint32_t)XXH3_64bits(begin, (size_t)(r->p - begin));
    return EDDY_OK;
  }
  }
  return EDDY_EFORMAT;
}

int eddy_key_hash(const void *key, size_t len, int32_t *hash)
{
  size_t vlen;
  int rc = eddy_mp_value_len(key, len, &vlen);
  if (rc != EDDY_OK)
    return rc;
  if (vlen != len)
    return EDDY_EFORMAT;
  eddy_mp_reader r;
  eddy_mp_reader_init(&r, key, len);
  uint32_t h;
  if ((rc = hash_value(&r, &h)) != EDDY_OK)
    return rc;
  *hash = (int32_t)h;
  return EDDY_OK;
}

int eddy_key_group(const void *key, size_t len, int max_parallelism, int *key_group)
{
  int32_t h;
  int rc = eddy_key_hash(key, len, &h);
  if (rc != EDDY_OK)
    return rc;
  *key_group = eddy_murmur_final(h) % max_parallelism;
  return EDDY_OK;
}

static int round_up_pow2(int x)
{
  uint32_t v = (uint32_t)x - 1;
  v |= v >> 1;
  v |= v >> 2;
  v |= v >> 4;
  v |= v >> 8;
  v |= v >> 16;
  return (int)(v + 1);
}

int eddy_default_max_parallelism(int p)
{
  if (p <= 0 || p > EDDY_MAX_PARALLELISM_UPPER)
    return -1;
  int m = round_up_pow2(p + p / 2);
  if (m < EDDY_MAX_PARALLELISM_LOWER)
    m = EDDY_MAX_PARALLELISM_LOWER;
  if (m > EDDY_MAX_PARALLELISM_UPPER)
    m = EDDY_MAX_PARALLELISM_UPPER;
  return m;
}

void eddy_key_group_range(int max_p, int p, int index, int *first, int *last)
{
  *first = (index * max_p + p - 1) / p;
  *last = ((index + 1) * max_p - 1) / p;
}

int eddy_operator_index(int key_group, int max_p, int p)
{
  return key_group * p / max_p;
}

const char *eddy_key_group_check(int max_p, int p)
{
  if (p <= 0)
    return "parallelism must be at least 1";
  if (max_p <= 0 || max_p > EDDY_MAX_PARALLELISM_UPPER)
    return "max parallelism must be between 1 and 32768";
  if (p > max_p)
    return "parallelism must not exceed max parallelism";
  return NULL;
}
