/*
 * The MessagePack codec: canonical bytes (checked byte for byte at every
 * size boundary, because state keys are addressed by these bytes and a
 * changed encoding would orphan stored state), and a reader that must
 * survive any input: truncated, hostile or deeply nested. Under ASan the
 * truncation tests put every prefix in a buffer of exactly its size, so a
 * read past the end is caught.
 */
#include "test.h"

#include <math.h>
#include <stdint.h>

#include "util/msgpack.h"

#define BYTES(lit) (lit), (sizeof(lit) - 1)

/* Encodes v, compares with the expected bytes and reads it back. */
static int int_encodes(int64_t v, const char *want, size_t want_len)
{
  eddy_buf b = EDDY_BUF_INIT;
  int ok = eddy_mp_write_int(&b, v) == EDDY_OK && b.len == want_len &&
           memcmp(b.data, want, want_len) == 0;
  eddy_mp_reader r;
  eddy_mp_item it;
  eddy_mp_reader_init(&r, b.data, b.len);
  ok = ok && eddy_mp_read(&r, &it) == EDDY_OK && it.type == EDDY_MP_INT &&
       it.v.i == v && eddy_mp_reader_done(&r);
  if (!ok)
    fprintf(stderr, "int %lld: wrong encoding or round trip\n", (long long)v);
  eddy_buf_free(&b);
  return ok;
}

static void test_int_boundaries(void)
{
  CHECK(int_encodes(0, BYTES("\x00")));
  CHECK(int_encodes(1, BYTES("\x01")));
  CHECK(int_encodes(127, BYTES("\x7f")));
  CHECK(int_encodes(128, BYTES("\xcc\x80")));
  CHECK(int_encodes(255, BYTES("\xcc\xff")));
  CHECK(int_encodes(256, BYTES("\xcd\x01\x00")));
  CHECK(int_encodes(65535, BYTES("\xcd\xff\xff")));
  CHECK(int_encodes(65536, BYTES("\xce\x00\x01\x00\x00")));
  CHECK(int_encodes(INT64_C(4294967295), BYTES("\xce\xff\xff\xff\xff")));
  CHECK(int_encodes(INT64_C(4294967296), BYTES("\xcf\x00\x00\x00\x01\x00\x00\x00\x00")));
  CHECK(int_encodes(INT64_MAX, BYTES("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff")));
  CHECK(int_encodes(-1, BYTES("\xff")));
  CHECK(int_encodes(-32, BYTES("\xe0")));
  CHECK(int_encodes(-33, BYTES("\xd0\xdf")));
  CHECK(int_encodes(-128, BYTES("\xd0\x80")));
  CHECK(int_encodes(-129, BYTES("\xd1\xff\x7f")));
  CHECK(int_encodes(-32768, BYTES("\xd1\x80\x00")));
  CHECK(int_encodes(-32769, BYTES("\xd2\xff\xff\x7f\xff")));
  CHECK(int_encodes(INT32_MIN, BYTES("\xd2\x80\x00\x00\x00")));
  CHECK(int_encodes((int64_t)INT32_MIN - 1, BYTES("\xd3\xff\xff\xff\xff\x7f\xff\xff\xff")));
  CHECK(int_encodes(INT64_MIN, BYTES("\xd3\x80\x00\x00\x00\x00\x00\x00\x00")));
}

static int float_encodes(double v, const char *want, size_t want_len)
{
  eddy_buf b = EDDY_BUF_INIT;
  int ok = eddy_mp_write_float(&b, v) == EDDY_OK && b.len == want_len &&
           memcmp(b.data, want, want_len) == 0;
  eddy_mp_reader r;
  eddy_mp_item it;
  eddy_mp_reader_init(&r, b.data, b.len);
  ok = ok && eddy_mp_read(&r, &it) == EDDY_OK && it.type == EDDY_MP_FLOAT &&
       eddy_mp_reader_done(&r);
  if (ok && !isnan(v))
    ok = memcmp(&it.v.f, &v, sizeof v) == 0; /* bit for bit: -0.0 too */
  else if (ok)
    ok = isnan(it.v.f);
  if (!ok)
    fprintf(stderr, "float %g: wrong encoding or round trip\n", v);
  eddy_buf_free(&b);
  return ok;
}

static double from_bits(uint64_t bits)
{
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

static void test_floats(void)
{
  /* always float64, even when float32 or an integer would hold the value */
  CHECK(float_encodes(1.5, BYTES("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(2.0, BYTES("\xcb\x40\x00\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(0.0, BYTES("\xcb\x00\x00\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(-0.0, BYTES("\xcb\x80\x00\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(0.1, BYTES("\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a")));
  CHECK(float_encodes(INFINITY, BYTES("\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(-INFINITY, BYTES("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(from_bits(1), BYTES("\xcb\x00\x00\x00\x00\x00\x00\x00\x01")));
  /* every NaN gives the same bytes */
  static const uint64_t nans[] = {
      UINT64_C(0x7ff8000000000000), UINT64_C(0xfff8000000000000),
      UINT64_C(0x7ff0000000000001), UINT64_C(0xfff0000000000001),
      UINT64_C(0x7fffffffffffffff), UINT64_C(0xffffffffffffffff),
      UINT64_C(0x7ff4000000000000)};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++)
    CHECK(float_encodes(from_bits(nans[i]), BYTES("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(NAN, BYTES("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00")));
  CHECK(float_encodes(-NAN, BYTES("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00")));
}

static void test_nil_bool(void)
{
  eddy_buf b = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_nil(&b), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_bool(&b, 0), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_bool(&b, 1), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_bool(&b, 42), EDDY_OK);
  CHECK_MEM(b.data, b.len, "\xc0\xc2\xc3\xc3", 4);
  eddy_mp_reader r;
  eddy_mp_item it;
  eddy_mp_reader_init(&r, b.data, b.len);
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
  CHECK_EQ_INT(it.type, EDDY_MP_NIL);
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_BOOL && it.v.b == 0);
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_BOOL && it.v.b == 1);
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_reader_offset(&r), 4);
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_EEOF);
  CHECK_EQ_INT(eddy_mp_reader_offset(&r), 4);
  eddy_buf_free(&b);
}

static void test_strings(void)
{
  static const struct {
    size_t len;
    const char *hdr;
    size_t hdr_len;
  } cases[] = {
      {0, BYTES("\xa0")},
      {1, BYTES("\xa1")},
      {31, BYTES("\xbf")},
      {32, BYTES("\xd9\x20")},
      {255, BYTES("\xd9\xff")},
      {256, BYTES("\xda\x01\x00")},
      {65535, BYTES("\xda\xff\xff")},
      {65536, BYTES("\xdb\x00\x01\x00\x00")},
  };
  char *text = malloc(65536);
  CHECK(text != NULL);
  if (text == NULL)
    return;
  for (size_t i = 0; i < 65536; i++)
    text[i] = (char)('a' + i % 26);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    eddy_buf b = EDDY_BUF_INIT;
    size_t n = cases[i].len;
    CHECK_EQ_INT(eddy_mp_write_str(&b, text, n), EDDY_OK);
    CHECK_EQ_INT(b.len, cases[i].hdr_len + n);
    CHECK_MEM(b.data, cases[i].hdr_len, cases[i].hdr, cases[i].hdr_len);
    CHECK(memcmp(b.data + cases[i].hdr_len, text, n) == 0);
    eddy_mp_reader r;
    eddy_mp_item it;
    eddy_mp_reader_init(&r, b.data, b.len);
    CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
    CHECK_EQ_INT(it.type, EDDY_MP_STR);
    CHECK_EQ_INT(it.v.s.len, n);
    CHECK(it.v.s.ptr == (const char *)b.data + cases[i].hdr_len);
    CHECK(eddy_mp_reader_done(&r));
    size_t vlen = 0;
    CHECK_EQ_INT(eddy_mp_value_len(b.data, b.len, &vlen), EDDY_OK);
    CHECK_EQ_INT(vlen, b.len);
    eddy_buf_free(&b);
  }
  /* over 4 GiB is refused before a byte of it is read */
  eddy_buf b = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_str(&b, "x", (size_t)UINT32_MAX + 1), EDDY_ELIMIT);
  CHECK_EQ_INT(b.len, 0);
  eddy_buf_free(&b);
  free(text);
}

static void test_containers(void)
{
  static const struct {
    uint32_t n;
    const char *arr;
    size_t arr_len;
    const char *map;
    size_t map_len;
  } cases[] = {
      {0, BYTES("\x90"), BYTES("\x80")},
      {15, BYTES("\x9f"), BYTES("\x8f")},
      {16, BYTES("\xdc\x00\x10"), BYTES("\xde\x00\x10")},
      {65535, BYTES("\xdc\xff\xff"), BYTES("\xde\xff\xff")},
      {65536, BYTES("\xdd\x00\x01\x00\x00"), BYTES("\xdf\x00\x01\x00\x00")},
      {UINT32_MAX, BYTES("\xdd\xff\xff\xff\xff"), BYTES("\xdf\xff\xff\xff\xff")},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    eddy_buf b = EDDY_BUF_INIT;
    eddy_mp_reader r;
    eddy_mp_item it;
    CHECK_EQ_INT(eddy_mp_write_array(&b, cases[i].n), EDDY_OK);
    CHECK_MEM(b.data, b.len, cases[i].arr, cases[i].arr_len);
    eddy_mp_reader_init(&r, b.data, b.len);
    CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
    CHECK(it.type == EDDY_MP_ARRAY && it.v.n == cases[i].n);
    CHECK(eddy_mp_reader_done(&r));
    eddy_buf_reset(&b);
    CHECK_EQ_INT(eddy_mp_write_map(&b, cases[i].n), EDDY_OK);
    CHECK_MEM(b.data, b.len, cases[i].map, cases[i].map_len);
    eddy_mp_reader_init(&r, b.data, b.len);
    CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
    CHECK(it.type == EDDY_MP_MAP && it.v.n == cases[i].n);
    CHECK(eddy_mp_reader_done(&r));
    eddy_buf_free(&b);
  }
}

/* Reads data as exactly one item and returns the code; *it gets the item. */
static int read_one(const char *data, size_t len, eddy_mp_item *it)
{
  eddy_mp_reader r;
  eddy_mp_reader_init(&r, data, len);
  int rc = eddy_mp_read(&r, it);
  if (rc == EDDY_OK && !eddy_mp_reader_done(&r))
    return EDDY_EINVAL; /* not what the test expected */
  if (rc != EDDY_OK && eddy_mp_reader_offset(&r) != 0)
    return EDDY_ECORRUPT; /* a failed read must not move */
  return rc;
}

static void test_foreign_forms(void)
{
  eddy_mp_item it;
  /* non-minimal integers */
  static const struct {
    const char *b;
    size_t n;
    int64_t v;
  } ints[] = {
      {BYTES("\xcc\x05"), 5},
      {BYTES("\xcd\x00\x05"), 5},
      {BYTES("\xce\x00\x00\x00\x05"), 5},
      {BYTES("\xcf\x00\x00\x00\x00\x00\x00\x00\x05"), 5},
      {BYTES("\xd0\x05"), 5},
      {BYTES("\xd1\xff\xff"), -1},
      {BYTES("\xd2\xff\xff\xff\xfe"), -2},
      {BYTES("\xd3\x00\x00\x00\x00\x00\x00\x00\x07"), 7},
      {BYTES("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"), INT64_MAX},
      {BYTES("\xce\xff\xff\xff\xff"), INT64_C(4294967295)},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    CHECK_EQ_INT(read_one(ints[i].b, ints[i].n, &it), EDDY_OK);
    CHECK(it.type == EDDY_MP_INT && it.v.i == ints[i].v);
  }
  /* float32 */
  CHECK_EQ_INT(read_one(BYTES("\xca\x3f\xc0\x00\x00"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_FLOAT && it.v.f == 1.5);
  CHECK_EQ_INT(read_one(BYTES("\xca\x7f\xc0\x00\x00"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_FLOAT && isnan(it.v.f));
  /* bin 8/16/32 read as strings; str32 with a small length */
  CHECK_EQ_INT(read_one(BYTES("\xc4\x03" "abc"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_STR && it.v.s.len == 3 && memcmp(it.v.s.ptr, "abc", 3) == 0);
  CHECK_EQ_INT(read_one(BYTES("\xc5\x00\x02" "ab"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_STR && it.v.s.len == 2);
  CHECK_EQ_INT(read_one(BYTES("\xc6\x00\x00\x00\x01" "a"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_STR && it.v.s.len == 1);
  CHECK_EQ_INT(read_one(BYTES("\xc4\x00"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_STR && it.v.s.len == 0);
  CHECK_EQ_INT(read_one(BYTES("\xdb\x00\x00\x00\x02" "hi"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_STR && it.v.s.len == 2);
  /* array32 and map32 with small counts */
  CHECK_EQ_INT(read_one(BYTES("\xdd\x00\x00\x00\x02"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_ARRAY && it.v.n == 2);
  size_t vlen;
  CHECK_EQ_INT(eddy_mp_value_len(BYTES("\xdf\x00\x00\x00\x01\xc4\x01x\xca\x00\x00\x00\x00"), &vlen), EDDY_OK);
  CHECK_EQ_INT(vlen, 13);
}

static void test_refused(void)
{
  eddy_mp_item it;
  size_t vlen;
  CHECK_EQ_INT(read_one(BYTES("\xc1"), &it), EDDY_EFORMAT);
  CHECK_EQ_INT(eddy_mp_value_len(BYTES("\x92\x01\xc1"), &vlen), EDDY_EFORMAT);
  /* ext types, fixed and variable, complete or not */
  static const char *const exts[] = {
      "\xd4\x01\x00", "\xd5\x01\x00\x00", "\xd6\x01\x00\x00\x00\x00",
      "\xd7\x01", "\xd8\x01", "\xc7\x01\x01\x00", "\xc8\x00\x01\x01\x00",
      "\xc9\x00\x00\x00\x01\x01\x00"};
  static const size_t ext_len[] = {3, 4, 6, 2, 2, 4, 5, 7};
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    CHECK_EQ_INT(read_one(exts[i], ext_len[i], &it), EDDY_EUNSUPPORTED);
    CHECK_EQ_INT(eddy_mp_value_len(exts[i], ext_len[i], &vlen), EDDY_EUNSUPPORTED);
  }
  CHECK_EQ_INT(eddy_mp_value_len(BYTES("\x81\x01\xd4\x01\x00"), &vlen), EDDY_EUNSUPPORTED);
  /* unsigned integers above INT64_MAX */
  CHECK_EQ_INT(read_one(BYTES("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"), &it), EDDY_ELIMIT);
  CHECK_EQ_INT(read_one(BYTES("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), &it), EDDY_ELIMIT);
  CHECK_EQ_INT(eddy_mp_value_len(BYTES("\x91\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), &vlen), EDDY_ELIMIT);
  /* nothing at all */
  CHECK_EQ_INT(read_one("", 0, &it), EDDY_EEOF);
  CHECK_EQ_INT(eddy_mp_value_len("", 0, &vlen), EDDY_EFORMAT);
}

/* A value with every kind of item in it, nested, for the truncation test. */
static void build_nested(eddy_buf *b)
{
  eddy_mp_write_map(b, 3);
  eddy_mp_write_str(b, "a", 1);
  eddy_mp_write_array(b, 20);
  static const int64_t ints[] = {0, 127, 128, 300, 70000, INT64_C(5000000000),
                                 -1, -100, -1000, -100000, INT64_C(-5000000000)};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    eddy_mp_write_int(b, ints[i]);
  eddy_mp_write_float(b, 1.5);
  eddy_mp_write_nil(b);
  eddy_mp_write_bool(b, 1);
  eddy_mp_write_str(b, "hello", 5);
  char text[300];
  memset(text, 'x', sizeof text);
  eddy_mp_write_str(b, text, 40);
  eddy_mp_write_str(b, text, 300);
  eddy_buf_append(b, BYTES("\xc4\x02zz\xca\x3f\xc0\x00\x00"));    /* bin8, float32 */
  eddy_buf_append(b, BYTES("\xdd\x00\x00\x00\x01\xc5\x00\x01q")); /* array32, bin16 */
  eddy_mp_write_str(b, "b", 1);
  eddy_mp_write_map(b, 17);
  for (int i = 0; i < 17; i++) {
    eddy_mp_write_int(b, i);
    eddy_mp_write_array(b, 1);
    eddy_mp_write_array(b, i % 3 ? 0 : 1);
    if (i % 3 == 0)
      eddy_mp_write_map(b, 0);
  }
  eddy_mp_write_str(b, "c", 1);
  eddy_buf_append(b, BYTES("\xdf\x00\x00\x00\x01\xc6\x00\x00\x00\x01k\xdb\x00\x00\x00\x01v"));
}

static void test_truncation(void)
{
  eddy_buf full = EDDY_BUF_INIT;
  build_nested(&full);
  size_t vlen = 0;
  CHECK_EQ_INT(eddy_mp_value_len(full.data, full.len, &vlen), EDDY_OK);
  CHECK_EQ_INT(vlen, full.len);
  int bad_len = 0, bad_skip = 0, bad_walk = 0;
  for (size_t cut = 0; cut < full.len; cut++) {
    /* exactly cut bytes, so ASan sees any read past them */
    unsigned char *p = malloc(cut ? cut : 1);
    CHECK(p != NULL);
    if (p == NULL)
      break;
    memcpy(p, full.data, cut);
    bad_len += eddy_mp_value_len(p, cut, &vlen) != EDDY_EFORMAT;
    eddy_mp_reader r;
    eddy_mp_reader_init(&r, p, cut);
    bad_skip += eddy_mp_skip(&r) != EDDY_EFORMAT || eddy_mp_reader_offset(&r) != 0;
    /* item by item: every read either succeeds inside the input or fails
     * without moving */
    eddy_mp_item it;
    int rc;
    eddy_mp_reader_init(&r, p, cut);
    while ((rc = eddy_mp_read(&r, &it)) == EDDY_OK) {
      if (it.type == EDDY_MP_STR &&
          (const unsigned char *)it.v.s.ptr + it.v.s.len > p + cut)
        bad_walk++;
    }
    bad_walk += rc != EDDY_EEOF && rc != EDDY_EFORMAT;
    bad_walk += eddy_mp_reader_offset(&r) > cut;
    free(p);
  }
  CHECK_EQ_INT(bad_len, 0);
  CHECK_EQ_INT(bad_skip, 0);
  CHECK_EQ_INT(bad_walk, 0);

  /* each header cut short on its own */
  static const char *const heads[] = {
      "\xcc", "\xcd\x01", "\xce\x01\x02\x03", "\xcf\x01\x02\x03\x04\x05\x06\x07",
      "\xd0", "\xd1\x01", "\xd2\x01\x02\x03", "\xd3\x01\x02\x03\x04\x05\x06\x07",
      "\xca\x01\x02\x03", "\xcb\x01\x02\x03\x04\x05\x06\x07", "\xd9", "\xd9\x02" "a",
      "\xda\x00", "\xda\x00\x02" "a", "\xdb\x00\x00\x00", "\xdb\x00\x00\x00\x02" "a",
      "\xc4", "\xc4\x01", "\xc5\x00", "\xc6\x00\x00\x00", "\xa2" "a",
      "\xdc\x00", "\xdd\x00\x00\x00", "\xde\x00", "\xdf\x00\x00\x00"};
  static const size_t head_len[] = {1, 2, 4, 8, 1, 2, 4, 8, 4, 8, 1, 3,
                                    2, 4, 4, 6, 1, 2, 2, 4, 2, 2, 4, 2, 4};
  CHECK_EQ_INT(sizeof heads / sizeof heads[0], sizeof head_len / sizeof head_len[0]);
  for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
    char *p = malloc(head_len[i]);
    memcpy(p, heads[i], head_len[i]);
    eddy_mp_item it;
    CHECK_EQ_INT(read_one(p, head_len[i], &it), EDDY_EFORMAT);
    free(p);
  }
  eddy_buf_free(&full);
}

static void test_skip(void)
{
  eddy_buf b = EDDY_BUF_INIT;
  build_nested(&b);
  size_t first = b.len;
  eddy_mp_write_array(&b, 2);
  eddy_mp_write_map(&b, 0);
  eddy_mp_write_str(&b, "tail", 4);
  size_t second = b.len - first;
  eddy_mp_write_int(&b, 42);

  size_t vlen = 0;
  CHECK_EQ_INT(eddy_mp_value_len(b.data, b.len, &vlen), EDDY_OK);
  CHECK_EQ_INT(vlen, first);
  CHECK_EQ_INT(eddy_mp_value_len(b.data + first, b.len - first, &vlen), EDDY_OK);
  CHECK_EQ_INT(vlen, second);
  CHECK_EQ_INT(eddy_mp_value_len(b.data, b.len, NULL), EDDY_OK);

  eddy_mp_reader r;
  eddy_mp_item it;
  eddy_mp_reader_init(&r, b.data, b.len);
  CHECK_EQ_INT(eddy_mp_skip(&r), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_reader_offset(&r), first);
  CHECK_EQ_INT(eddy_mp_skip(&r), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_reader_offset(&r), first + second);
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_INT && it.v.i == 42);
  CHECK_EQ_INT(eddy_mp_skip(&r), EDDY_EFORMAT); /* nothing left */
  CHECK(eddy_mp_reader_done(&r));

  /* a scalar, and the contents of a container after reading its header */
  eddy_mp_reader_init(&r, b.data, b.len);
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_MAP && it.v.n == 3);
  CHECK_EQ_INT(eddy_mp_skip(&r), EDDY_OK); /* "a" */
  CHECK_EQ_INT(eddy_mp_skip(&r), EDDY_OK); /* its 20 elements */
  CHECK_EQ_INT(eddy_mp_read(&r, &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_STR && it.v.s.len == 1 && it.v.s.ptr[0] == 'b');
  eddy_buf_free(&b);
}

static void test_depth(void)
{
  enum { DEEP = 100000 };
  unsigned char *p = malloc(DEEP + 1);
  CHECK(p != NULL);
  if (p == NULL)
    return;
  size_t vlen;
  /* EDDY_MP_MAX_DEPTH nested arrays around a scalar are fine, one more is
   * not; the same through maps */
  memset(p, 0x91, EDDY_MP_MAX_DEPTH);
  p[EDDY_MP_MAX_DEPTH] = 0x01;
  CHECK_EQ_INT(eddy_mp_value_len(p, EDDY_MP_MAX_DEPTH + 1, &vlen), EDDY_OK);
  CHECK_EQ_INT(vlen, EDDY_MP_MAX_DEPTH + 1);
  memset(p, 0x91, EDDY_MP_MAX_DEPTH + 1);
  p[EDDY_MP_MAX_DEPTH + 1] = 0x01;
  CHECK_EQ_INT(eddy_mp_value_len(p, EDDY_MP_MAX_DEPTH + 2, &vlen), EDDY_ELIMIT);
  eddy_mp_reader r;
  eddy_mp_reader_init(&r, p, EDDY_MP_MAX_DEPTH + 2);
  CHECK_EQ_INT(eddy_mp_skip(&r), EDDY_ELIMIT);
  CHECK_EQ_INT(eddy_mp_reader_offset(&r), 0);

  eddy_buf b = EDDY_BUF_INIT;
  for (int i = 0; i < EDDY_MP_MAX_DEPTH; i++) {
    eddy_mp_write_map(&b, 1);
    eddy_mp_write_str(&b, "k", 1);
  }
  eddy_mp_write_nil(&b);
  CHECK_EQ_INT(eddy_mp_value_len(b.data, b.len, &vlen), EDDY_OK);
  eddy_buf_reset(&b);
  for (int i = 0; i <= EDDY_MP_MAX_DEPTH; i++) {
    eddy_mp_write_map(&b, 1);
    eddy_mp_write_nil(&b);
  }
  eddy_mp_write_nil(&b);
  CHECK_EQ_INT(eddy_mp_value_len(b.data, b.len, &vlen), EDDY_ELIMIT);
  eddy_buf_free(&b);

  /* very deep input neither recurses nor walks far */
  memset(p, 0x91, DEEP);
  p[DEEP] = 0x01;
  CHECK_EQ_INT(eddy_mp_value_len(p, DEEP + 1, &vlen), EDDY_ELIMIT);
  free(p);
}

static void test_huge_counts(void)
{
  /* a header claiming more items than there are bytes fails at once
   * instead of walking 2^33 phantom items */
  size_t vlen;
  unsigned char *p = malloc(5);
  memcpy(p, "\xdf\xff\xff\xff\xff", 5);
  CHECK_EQ_INT(eddy_mp_value_len(p, 5, &vlen), EDDY_EFORMAT);
  memcpy(p, "\xdd\xff\xff\xff\xff", 5);
  CHECK_EQ_INT(eddy_mp_value_len(p, 5, &vlen), EDDY_EFORMAT);
  free(p);
  unsigned char big[1006];
  memcpy(big, "\x91\xdd\xff\xff\xff\xff", 6);
  memset(big + 6, 0x01, 1000);
  CHECK_EQ_INT(eddy_mp_value_len(big, sizeof big, &vlen), EDDY_EFORMAT);
  /* a map of 600 pairs needs 1200 items: 1000 bytes are not enough */
  memcpy(big, "\x91\xde\x02\x58", 4);
  CHECK_EQ_INT(eddy_mp_value_len(big, sizeof big, &vlen), EDDY_EFORMAT);
  /* the header alone reads fine: it is only a header */
  eddy_mp_item it;
  CHECK_EQ_INT(read_one(BYTES("\xdf\xff\xff\xff\xff"), &it), EDDY_OK);
  CHECK(it.type == EDDY_MP_MAP && it.v.n == UINT32_MAX);
}

/* Writes key then value as one pair and notes it. */
static void pair_int(eddy_buf *b, eddy_mp_pair *p, int64_t key, int64_t value)
{
  p->off = b->len;
  eddy_mp_write_int(b, key);
  p->key_len = b->len - p->off;
  eddy_mp_write_int(b, value);
  p->len = b->len - p->off;
}

static void pair_str(eddy_buf *b, eddy_mp_pair *p, const char *key,
                     int64_t value)
{
  p->off = b->len;
  eddy_mp_write_str(b, key, strlen(key));
  p->key_len = b->len - p->off;
  eddy_mp_write_array(b, 2);
  eddy_mp_write_int(b, value);
  eddy_mp_write_str(b, key, strlen(key));
  p->len = b->len - p->off;
}

/* Reads a map of int keys whose values are key * 3, checks the keys ascend
 * bytewise, and returns the number of pairs (-1 on a problem). */
static int check_int_map(const void *data, size_t len)
{
  eddy_mp_reader r;
  eddy_mp_item it;
  eddy_mp_reader_init(&r, data, len);
  if (eddy_mp_read(&r, &it) != EDDY_OK || it.type != EDDY_MP_MAP)
    return -1;
  uint32_t n = it.v.n;
  const unsigned char *prev = NULL;
  size_t prev_len = 0;
  for (uint32_t i = 0; i < n; i++) {
    const unsigned char *k = r.p;
    eddy_mp_item key, val;
    if (eddy_mp_read(&r, &key) != EDDY_OK || key.type != EDDY_MP_INT)
      return -1;
    size_t klen = (size_t)(r.p - k);
    if (eddy_mp_read(&r, &val) != EDDY_OK || val.type != EDDY_MP_INT ||
        val.v.i != key.v.i * 3)
      return -1;
    if (prev != NULL && eddy_mp_compare(prev, prev_len, k, klen) >= 0)
      return -1;
    prev = k;
    prev_len = klen;
  }
  return eddy_mp_reader_done(&r) ? (int)n : -1;
}

static uint64_t rng = 88172645463325252u;

static uint32_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static void test_finish_map(void)
{
  eddy_buf b = EDDY_BUF_INIT, scratch = EDDY_BUF_INIT;
  eddy_mp_pair pairs[64];

  /* a map inside an array, pairs written out of order */
  eddy_mp_write_array(&b, 2);
  size_t start = b.len;
  pair_str(&b, &pairs[0], "b", 1);
  pair_str(&b, &pairs[1], "a", 2);
  pair_int(&b, &pairs[2], 1, 3);
  pair_str(&b, &pairs[3], "", 4);
  CHECK_EQ_INT(eddy_mp_finish_map(&b, start, pairs, 4, &scratch), EDDY_OK);
  eddy_mp_write_nil(&b);
  static const char want[] = "\x92\x84" "\x01\x03" "\xa0\x92\x04\xa0"
                             "\xa1" "a\x92\x02\xa1" "a" "\xa1" "b\x92\x01\xa1" "b"
                             "\xc0";
  CHECK_MEM(b.data, b.len, want, sizeof want - 1);
  size_t vlen;
  CHECK_EQ_INT(eddy_mp_value_len(b.data, b.len, &vlen), EDDY_OK);
  CHECK_EQ_INT(vlen, b.len);

  /* no pairs */
  eddy_buf_reset(&b);
  CHECK_EQ_INT(eddy_mp_finish_map(&b, 0, pairs, 0, &scratch), EDDY_OK);
  CHECK_MEM(b.data, b.len, "\x80", 1);

  /* duplicate keys are refused and the buffer is left as it was */
  eddy_buf_reset(&b);
  pair_str(&b, &pairs[0], "a", 1);
  pair_str(&b, &pairs[1], "b", 2);
  pair_str(&b, &pairs[2], "a", 3);
  size_t before = b.len;
  unsigned char copy[64];
  memcpy(copy, b.data, before);
  CHECK_EQ_INT(eddy_mp_finish_map(&b, 0, pairs, 3, &scratch), EDDY_EINVAL);
  CHECK_MEM(b.data, b.len, copy, before);

  /* 15, 16 (map16 header) and every size up to 64 (the qsort path), keys
   * in random order, negative ones included */
  for (uint32_t n = 1; n <= 64; n++) {
    int keys[64];
    for (uint32_t i = 0; i < n; i++)
      keys[i] = (int)i * 37 - 600;
    for (uint32_t i = n - 1; i > 0; i--) {
      uint32_t j = rnd() % (i + 1);
      int t = keys[i];
      keys[i] = keys[j];
      keys[j] = t;
    }
    eddy_buf_reset(&b);
    for (uint32_t i = 0; i < n; i++)
      pair_int(&b, &pairs[i], keys[i], keys[i] * 3);
    CHECK_EQ_INT(eddy_mp_finish_map(&b, 0, pairs, n, &scratch), EDDY_OK);
    CHECK_EQ_INT(check_int_map(b.data, b.len), (int)n);
    CHECK(n < 16 ? b.data[0] == (0x80 | n) : b.data[0] == 0xde);
    /* the same keys again: a duplicate anywhere is found */
    if (n >= 2) {
      eddy_buf_reset(&b);
      for (uint32_t i = 0; i < n; i++)
        pair_int(&b, &pairs[i], keys[i == n - 1 ? 0 : i], 0);
      CHECK_EQ_INT(eddy_mp_finish_map(&b, 0, pairs, n, &scratch), EDDY_EINVAL);
    }
  }
  eddy_buf_free(&b);
  eddy_buf_free(&scratch);
}

static void test_compare(void)
{
  CHECK_EQ_INT(eddy_mp_compare(NULL, 0, NULL, 0), 0);
  CHECK(eddy_mp_compare(NULL, 0, "a", 1) < 0);
  CHECK(eddy_mp_compare("a", 1, NULL, 0) > 0);
  CHECK_EQ_INT(eddy_mp_compare("abc", 3, "abc", 3), 0);
  CHECK(eddy_mp_compare("ab", 2, "abc", 3) < 0);
  CHECK(eddy_mp_compare("abc", 3, "ab", 2) > 0);
  CHECK(eddy_mp_compare("b", 1, "abc", 3) > 0);
  CHECK(eddy_mp_compare("abd", 3, "abc", 3) > 0);
  /* unsigned bytes: 0x80 sorts after 0x7f, 0xff last */
  CHECK(eddy_mp_compare("\x80", 1, "\x7f", 1) > 0);
  CHECK(eddy_mp_compare("\xff", 1, "\x00\x00", 2) > 0);
  /* a shorter equal prefix first, even with a zero byte next */
  CHECK(eddy_mp_compare("a", 1, "a\x00", 2) < 0);
  /* what this means for encoded values: positive fixints before strings
   * before wider integers before negative fixints */
  CHECK(eddy_mp_compare(BYTES("\x7f"), BYTES("\xa1" "a")) < 0);
  CHECK(eddy_mp_compare(BYTES("\xa1" "a"), BYTES("\xcc\x80")) < 0);
  CHECK(eddy_mp_compare(BYTES("\xcc\x80"), BYTES("\xff")) < 0);
}

TEST_MAIN("msgpack", TEST(test_int_boundaries), TEST(test_floats),
          TEST(test_nil_bool), TEST(test_strings), TEST(test_containers),
          TEST(test_foreign_forms), TEST(test_refused), TEST(test_truncation),
          TEST(test_skip), TEST(test_depth), TEST(test_huge_counts),
          TEST(test_finish_map), TEST(test_compare))
