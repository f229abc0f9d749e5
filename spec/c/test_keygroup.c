/*
 * Key groups against the test vectors of SEMANTICS.md section 1, computed
 * with Java semantics, so a key lands where Flink would put it.
 */
#include "test.h"

#include "state/keygroup.h"
#include "util/msgpack.h"

static int kg_of_int(int64_t v, int maxp)
{
  eddy_buf b = EDDY_BUF_INIT;
  eddy_mp_write_int(&b, v);
  int kg = -1;
  CHECK_EQ_INT(eddy_key_group(b.data, b.len, maxp, &kg), EDDY_OK);
  eddy_buf_free(&b);
  return kg;
}

static int32_t hash_of_str(const char *s, size_t n)
{
  eddy_buf b = EDDY_BUF_INIT;
  eddy_mp_write_str(&b, s, n);
  int32_t h = 0;
  CHECK_EQ_INT(eddy_key_hash(b.data, b.len, &h), EDDY_OK);
  eddy_buf_free(&b);
  return h;
}

static int kg_of_str(const char *s, int maxp)
{
  eddy_buf b = EDDY_BUF_INIT;
  eddy_mp_write_str(&b, s, strlen(s));
  int kg = -1;
  CHECK_EQ_INT(eddy_key_group(b.data, b.len, maxp, &kg), EDDY_OK);
  eddy_buf_free(&b);
  return kg;
}

static void test_murmur(void)
{
  CHECK_EQ_INT(eddy_murmur_final(0), 593689054);
  CHECK_EQ_INT(eddy_murmur_final(-1), 1982413648);
  CHECK_EQ_INT(eddy_murmur_final(42), 1134849565);
  CHECK_EQ_INT(eddy_murmur_final(1), 68075478);
  CHECK_EQ_INT(eddy_murmur_final(2), 1085422463);
  CHECK_EQ_INT(eddy_murmur_final(97), 1455541201);
  CHECK_EQ_INT(eddy_murmur_final(99162322), 1715862179);
  CHECK_EQ_INT(eddy_murmur_final(101943363), 23124534);
  CHECK_EQ_INT(eddy_murmur_final(-147134606), 1193504810);
}

static void test_long_keys(void)
{
  static const int want[] = {86, 127, 113, 7, 126};
  static const int op2[] = {1, 1, 1, 0, 1};
  static const int op4[] = {2, 3, 3, 0, 3};
  for (int i = 0; i < 5; i++) {
    int kg = kg_of_int(i + 1, 128);
    CHECK_EQ_INT(kg, want[i]);
    CHECK_EQ_INT(eddy_operator_index(kg, 128, 2), op2[i]);
    CHECK_EQ_INT(eddy_operator_index(kg, 128, 4), op4[i]);
  }
}

static void test_string_keys(void)
{
  CHECK_EQ_INT(hash_of_str("a", 1), 97);
  CHECK_EQ_INT(hash_of_str("hello", 5), 99162322);
  CHECK_EQ_INT(hash_of_str("key-1", 5), 101943363);
  CHECK_EQ_INT(hash_of_str("user_42", 7), -147134606);
  CHECK_EQ_INT(kg_of_str("a", 128), 81);
  CHECK_EQ_INT(kg_of_str("a", 32768), 19409);
  CHECK_EQ_INT(kg_of_str("hello", 128), 35);
  CHECK_EQ_INT(kg_of_str("hello", 32768), 31395);
  CHECK_EQ_INT(kg_of_str("key-1", 128), 54);
  CHECK_EQ_INT(kg_of_str("key-1", 32768), 23094);
  CHECK_EQ_INT(kg_of_str("user_42", 128), 42);
  CHECK_EQ_INT(kg_of_str("user_42", 32768), 28714);
}

static void test_utf16(void)
{
  /* "é" is one UTF-16 unit 0xE9; U+1F600 is the pair D83D DE00. */
  CHECK_EQ_INT(hash_of_str("\xc3\xa9", 2), 0xe9);
  CHECK_EQ_INT(hash_of_str("\xf0\x9f\x98\x80", 4), (int32_t)(31u * 0xd83du + 0xde00u));
  /* invalid bytes count as one unit of their value */
  CHECK_EQ_INT(hash_of_str("\xff", 1), 0xff);
  CHECK_EQ_INT(hash_of_str("\xc3", 1), 0xc3);
  /* overlong "/" (C0 AF) is two units */
  CHECK_EQ_INT(hash_of_str("\xc0\xaf", 2), (int32_t)(31u * 0xc0u + 0xafu));
  CHECK_EQ_INT(hash_of_str("", 0), 0);
}

static void test_other_keys(void)
{
  eddy_buf b = EDDY_BUF_INIT;
  int32_t h;
  eddy_mp_write_bool(&b, 1);
  CHECK_EQ_INT(eddy_key_hash(b.data, b.len, &h), EDDY_OK);
  CHECK_EQ_INT(h, 1231);
  eddy_buf_reset(&b);
  eddy_mp_write_bool(&b, 0);
  eddy_key_hash(b.data, b.len, &h);
  CHECK_EQ_INT(h, 1237);
  /* Long.hashCode(-1) = 0; Long.hashCode(2^32) = 1 */
  eddy_buf_reset(&b);
  eddy_mp_write_int(&b, -1);
  eddy_key_hash(b.data, b.len, &h);
  CHECK_EQ_INT(h, 0);
  eddy_buf_reset(&b);
  eddy_mp_write_int(&b, INT64_C(4294967296));
  eddy_key_hash(b.data, b.len, &h);
  CHECK_EQ_INT(h, 1);
  /* Double.hashCode(1.0) = 1072693248 */
  eddy_buf_reset(&b);
  eddy_mp_write_float(&b, 1.0);
  eddy_key_hash(b.data, b.len, &h);
  CHECK_EQ_INT(h, 1072693248);
  /* Tuple2("a", 1L): 31 * 97 + 1 */
  eddy_buf_reset(&b);
  eddy_mp_write_array(&b, 2);
  eddy_mp_write_str(&b, "a", 1);
  eddy_mp_write_int(&b, 1);
  eddy_key_hash(b.data, b.len, &h);
  CHECK_EQ_INT(h, 31 * 97 + 1);
  /* nil keys are refused, truncated bytes too */
  eddy_buf_reset(&b);
  eddy_mp_write_nil(&b);
  CHECK_EQ_INT(eddy_key_hash(b.data, b.len, &h), EDDY_EINVAL);
  eddy_buf_reset(&b);
  eddy_mp_write_array(&b, 2);
  eddy_mp_write_int(&b, 1);
  CHECK_EQ_INT(eddy_key_hash(b.data, b.len, &h), EDDY_EFORMAT);
  CHECK_EQ_INT(eddy_key_hash(b.data, 0, &h), EDDY_EFORMAT);
  eddy_buf_free(&b);
}

static void test_max_parallelism(void)
{
  CHECK_EQ_INT(eddy_default_max_parallelism(1), 128);
  CHECK_EQ_INT(eddy_default_max_parallelism(85), 128);
  CHECK_EQ_INT(eddy_default_max_parallelism(86), 256);
  CHECK_EQ_INT(eddy_default_max_parallelism(100), 256);
  CHECK_EQ_INT(eddy_default_max_parallelism(200), 512);
  CHECK_EQ_INT(eddy_default_max_parallelism(1000), 2048);
  CHECK_EQ_INT(eddy_default_max_parallelism(30000), 32768);
  CHECK_EQ_INT(eddy_default_max_parallelism(32768), 32768);
  CHECK_EQ_INT(eddy_default_max_parallelism(0), -1);
  CHECK_EQ_INT(eddy_default_max_parallelism(32769), -1);
}

static void test_ranges(void)
{
  int f, l;
  static const int p3[3][2] = {{0, 42}, {43, 85}, {86, 127}};
  for (int i = 0; i < 3; i++) {
    eddy_key_group_range(128, 3, i, &f, &l);
    CHECK_EQ_INT(f, p3[i][0]);
    CHECK_EQ_INT(l, p3[i][1]);
  }
  static const int p4[4][2] = {{0, 2}, {3, 4}, {5, 7}, {8, 9}};
  for (int i = 0; i < 4; i++) {
    eddy_key_group_range(10, 4, i, &f, &l);
    CHECK_EQ_INT(f, p4[i][0]);
    CHECK_EQ_INT(l, p4[i][1]);
  }
  static const int idx[10] = {0, 0, 0, 1, 1, 2, 2, 2, 3, 3};
  for (int kg = 0; kg < 10; kg++)
    CHECK_EQ_INT(eddy_operator_index(kg, 10, 4), idx[kg]);
  /* the range formula and the index formula agree everywhere */
  for (int maxp = 1; maxp <= 300; maxp += 7)
    for (int p = 1; p <= maxp; p += 3)
      for (int i = 0; i < p; i++) {
        eddy_key_group_range(maxp, p, i, &f, &l);
        for (int kg = f; kg <= l; kg++)
          if (eddy_operator_index(kg, maxp, p) != i)
            CHECK(!"range and operator index disagree");
      }
  CHECK(eddy_key_group_check(128, 0) != NULL);
  CHECK(eddy_key_group_check(128, 129) != NULL);
  CHECK(eddy_key_group_check(40000, 1) != NULL);
  CHECK(eddy_key_group_check(128, 128) == NULL);
}

TEST_MAIN("keygroup", TEST(test_murmur), TEST(test_long_keys),
          TEST(test_string_keys), TEST(test_utf16), TEST(test_other_keys),
          TEST(test_max_parallelism), TEST(test_ranges))
