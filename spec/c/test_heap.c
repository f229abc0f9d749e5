/*
 * The heap backend through the public functions of backend.h: what every
 * backend must do (absent rows, overwrites, namespaces, lists, maps, sorted
 * output, snapshot cursors) plus the argument checks of the wrappers, whose
 * messages end up in front of users; the copy-on-write snapshots of
 * checkpoints, read by a second thread while the main thread writes; and
 * restores, which hand whole rows over in bulk.
 *
 * Everything but the copy-on-write internals is what any backend must do,
 * so this file is also the suite of the RocksDB backend: test_rocksdb.c
 * defines SUITE_ROCKSDB and includes it, and every test here runs there
 * too. The out-of-memory tests then run without faults (RocksDB's own
 * allocations cannot fail politely), as they do under the sanitizers:
 * still random operations checked against a model.
 */
#include "test.h"

#include <pthread.h>
#include <stdint.h>

#include "state/backend.h"
#include "state/keygroup.h"
#include "util/msgpack.h"

#define MAXP 128

#ifdef SUITE_ROCKSDB
#define SUITE_NAME "rocksdb"
static int suite_backend_new(const eddy_backend_config *cfg, eddy_backend **out, eddy_err *err)
{
  return eddy_rocksdb_backend_new(cfg, NULL, out, err);
}
#else
#define SUITE_NAME "heap"
#define SUITE_EXTRA_TESTS
#define suite_backend_new eddy_heap_backend_new
#endif

static eddy_backend *new_backend(int first, int last)
{
  eddy_backend_config cfg = {MAXP, first, last};
  eddy_backend *b = NULL;
  eddy_err err = {0, ""};
  CHECK_EQ_INT(suite_backend_new(&cfg, &b, &err), EDDY_OK);
  CHECK(b != NULL);
  return b;
}

static uint32_t reg(eddy_backend *b, const char *name, eddy_state_kind kind)
{
  uint32_t id = UINT32_MAX;
  CHECK_EQ_INT(eddy_backend_register(b, name, kind, &id), EDDY_OK);
  return id;
}

/* Encoded values live in small fixed buffers so the tests read plainly. */
typedef struct enc {
  unsigned char data[64];
  size_t len;
} enc;

static enc from_buf(eddy_buf *buf)
{
  enc e;
  CHECK(buf->len <= sizeof e.data);
  e.len = buf->len < sizeof e.data ? buf->len : sizeof e.data;
  memcpy(e.data, buf->data, e.len);
  eddy_buf_free(buf);
  return e;
}

static enc mp_int(int64_t v)
{
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_int(&buf, v), EDDY_OK);
  return from_buf(&buf);
}

static enc mp_str(const char *s)
{
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_str(&buf, s, strlen(s)), EDDY_OK);
  return from_buf(&buf);
}

/* A window namespace as windows.lua writes it: [start, end]. */
static enc mp_window(int64_t start, int64_t end)
{
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_array(&buf, 2), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_int(&buf, start), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_int(&buf, end), EDDY_OK);
  return from_buf(&buf);
}

static eddy_row row_of(uint32_t state, int kg, const enc *key, const enc *ns)
{
  eddy_row r = {state, kg, key->data, key->len, NULL, 0};
  if (ns != NULL) {
    r.ns = ns->data;
    r.ns_len = ns->len;
  }
  return r;
}

static void check_value(eddy_backend *b, const eddy_row *r, const enc *want)
{
  eddy_slice v = {NULL, 0};
  CHECK_EQ_INT(eddy_backend_get(b, r, &v), EDDY_OK);
  CHECK_MEM(v.data, v.len, want->data, want->len);
}

static void check_absent(eddy_backend *b, const eddy_row *r)
{
  eddy_slice v = {NULL, 0};
  CHECK_EQ_INT(eddy_backend_get(b, r, &v), EDDY_ENOTFOUND);
}

static int contains(const char *haystack, const char *needle)
{
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* A small deterministic generator, so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

/*
 * Fault injection, as in SQLite's and Lua's test builds: while fail_one_in
 * is not 0, one allocation in fail_one_in fails, so that every
 * out-of-memory path of the backend gets taken. The test replaces malloc,
 * calloc and realloc for this, except under ASan or TSan, which own them there
 * (under valgrind, pass --soname-synonyms=somalloc=nouserintercepts).
 */
static unsigned fail_one_in;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(SUITE_ROCKSDB)
#define FAULTS 0
#else
#define FAULTS 1
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);

static int should_fail(void)
{
  return fail_one_in != 0 && rnd() % fail_one_in == 0;
}

void *malloc(size_t n) { return should_fail() ? NULL : __libc_malloc(n); }

void *calloc(size_t n, size_t size)
{
  return should_fail() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
  return should_fail() ? NULL : __libc_realloc(p, n);
}
#endif

static void shuffle(int *v, int n)
{
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(rnd() % (uint32_t)(i + 1));
    int t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

static void test_create(void)
{
  eddy_backend *b = NULL;
  eddy_err err = {0, ""};
  eddy_backend_config bad = {128, 10, 5};
  CHECK_EQ_INT(suite_backend_new(&bad, &b, &err), EDDY_EINVAL);
  CHECK(contains(err.msg, "bad key-group range [10, 5]"));
  CHECK(b == NULL);
  bad = (eddy_backend_config){128, 0, 128};
  CHECK_EQ_INT(suite_backend_new(&bad, &b, &err), EDDY_EINVAL);
  bad = (eddy_backend_config){0, 0, 0};
  CHECK_EQ_INT(suite_backend_new(&bad, &b, &err), EDDY_EINVAL);
  bad = (eddy_backend_config){128, -1, 3};
  CHECK_EQ_INT(suite_backend_new(&bad, &b, &err), EDDY_EINVAL);
  CHECK_EQ_INT(suite_backend_new(NULL, &b, &err), EDDY_EINVAL);
  eddy_backend_config good = {128, 0, 127};
  CHECK_EQ_INT(suite_backend_new(&good, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(suite_backend_new(&good, &b, NULL), EDDY_OK);

  CHECK_EQ_STR(eddy_backend_name(b), SUITE_NAME);
  int maxp, first, last;
  eddy_backend_key_groups(b, &maxp, &first, &last);
  CHECK_EQ_INT(maxp, 128);
  CHECK_EQ_INT(first, 0);
  CHECK_EQ_INT(last, 127);
  eddy_backend_destroy(b);
  eddy_backend_destroy(NULL);
}

static void test_register(void)
{
  eddy_backend *b = new_backend(0, 127);
  uint32_t v = reg(b, "count", EDDY_STATE_VALUE);
  uint32_t m = reg(b, "seen", EDDY_STATE_MAP);
  CHECK_EQ_INT(v, 0);
  CHECK_EQ_INT(m, 1);
  CHECK_EQ_INT(reg(b, "count", EDDY_STATE_VALUE), v);
  CHECK_EQ_INT(reg(b, "seen", EDDY_STATE_MAP), m);
  CHECK_EQ_INT(eddy_backend_state_count(b), 2);

  uint32_t id = 77;
  CHECK_EQ_INT(eddy_backend_register(b, "count", EDDY_STATE_LIST, &id), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "state 'count' is a value state, not a list state");
  CHECK_EQ_INT(id, 77);
  CHECK_EQ_INT(eddy_backend_register(b, "", EDDY_STATE_VALUE, &id), EDDY_EINVAL);
  CHECK(contains(eddy_backend_errmsg(b), "non-empty name"));
  CHECK_EQ_INT(eddy_backend_state_count(b), 2);

  /* more states than the first allocation holds */
  char name[32];
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof name, "s%d", i);
    CHECK_EQ_INT(reg(b, name, (eddy_state_kind)(i % 5)), (uint32_t)(i + 2));
  }
  CHECK_EQ_INT(eddy_backend_state_count(b), 42);
  CHECK_EQ_STR(eddy_backend_state_name(b, 0), "count");
  CHECK_EQ_STR(eddy_backend_state_name(b, 41), "s39");
  CHECK(eddy_backend_state_name(b, 42) == NULL);
  CHECK_EQ_INT(eddy_backend_state_kind(b, 1), EDDY_STATE_MAP);
  CHECK_EQ_INT(eddy_backend_state_kind(b, 4), EDDY_STATE_MAP);
  CHECK_EQ_STR(eddy_state_kind_name(EDDY_STATE_AGGREGATING), "aggregating");
  eddy_backend_destroy(b);
}

static void test_values(void)
{
  eddy_backend *b = new_backend(0, 127);
  uint32_t s = reg(b, "v", EDDY_STATE_VALUE);
  enc k1 = mp_str("user-1"), k2 = mp_str("user-2");
  eddy_row r1 = row_of(s, 5, &k1, NULL), r2 = row_of(s, 5, &k2, NULL);

  check_absent(b, &r1);
  CHECK(contains(eddy_backend_errmsg(b), "'v'"));
  enc small = mp_int(7), big = mp_str("a value rather longer than the first one");
  CHECK_EQ_INT(eddy_backend_put(b, &r1, small.data, small.len), EDDY_OK);
  check_value(b, &r1, &small);
  check_absent(b, &r2);
  CHECK_EQ_INT(eddy_backend_put(b, &r1, big.data, big.len), EDDY_OK);
  check_value(b, &r1, &big);
  CHECK_EQ_INT(eddy_backend_put(b, &r1, small.data, small.len), EDDY_OK);
  check_value(b, &r1, &small);
  enc mid = mp_str("twenty-one characters");
  CHECK_EQ_INT(eddy_backend_put(b, &r1, big.data, big.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_put(b, &r1, mid.data, mid.len), EDDY_OK);
  check_value(b, &r1, &mid);

  /* a slice from get handed straight back to put */
  eddy_slice got;
  CHECK_EQ_INT(eddy_backend_get(b, &r1, &got), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_put(b, &r1, got.data, got.len), EDDY_OK);
  check_value(b, &r1, &mid);
  CHECK_EQ_INT(eddy_backend_get(b, &r1, &got), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_put(b, &r2, got.data, got.len), EDDY_OK);
  check_value(b, &r2, &mid);

  /* the same key in another key group is another row (the caller computes
   * key groups; the backend must not mix them up) */
  eddy_row other = row_of(s, 6, &k1, NULL);
  check_absent(b, &other);

  CHECK_EQ_INT(eddy_backend_clear(b, &r1), EDDY_OK);
  check_absent(b, &r1);
  check_value(b, &r2, &mid);
  CHECK_EQ_INT(eddy_backend_clear(b, &r1), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_clear(b, &r2), EDDY_OK);
  check_absent(b, &r2);

  /* reducing and aggregating rows behave as values */
  uint32_t red = reg(b, "sum", EDDY_STATE_REDUCING);
  uint32_t agg = reg(b, "avg", EDDY_STATE_AGGREGATING);
  eddy_row rr = row_of(red, 5, &k1, NULL), ra = row_of(agg, 5, &k1, NULL);
  CHECK_EQ_INT(eddy_backend_put(b, &rr, small.data, small.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_put(b, &ra, big.data, big.len), EDDY_OK);
  check_value(b, &rr, &small);
  check_value(b, &ra, &big);
  /* states do not share rows */
  check_absent(b, &r1);
  eddy_backend_destroy(b);
}

static void test_namespaces(void)
{
  eddy_backend *b = new_backend(0, 127);
  uint32_t s = reg(b, "w", EDDY_STATE_REDUCING);
  enc key = mp_str("k"), w1 = mp_window(0, 1000), w2 = mp_window(1000, 2000);
  eddy_row plain = row_of(s, 9, &key, NULL), in1 = row_of(s, 9, &key, &w1),
           in2 = row_of(s, 9, &key, &w2);
  enc a = mp_int(1), c = mp_int(2), d = mp_int(3);
  CHECK_EQ_INT(eddy_backend_put(b, &in1, a.data, a.len), EDDY_OK);
  check_absent(b, &plain);
  check_absent(b, &in2);
  CHECK_EQ_INT(eddy_backend_put(b, &in2, c.data, c.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_put(b, &plain, d.data, d.len), EDDY_OK);
  check_value(b, &in1, &a);
  check_value(b, &in2, &c);
  check_value(b, &plain, &d);
  CHECK_EQ_INT(eddy_backend_clear(b, &in1), EDDY_OK);
  check_absent(b, &in1);
  check_value(b, &in2, &c);
  check_value(b, &plain, &d);
  /* a non-NULL namespace pointer with length 0 is the empty namespace */
  eddy_row empty_ns = plain;
  empty_ns.ns = w1.data;
  check_value(b, &empty_ns, &d);
  eddy_backend_destroy(b);
}

static void test_bad_rows(void)
{
  eddy_backend *b = new_backend(43, 85);
  uint32_t v = reg(b, "v", EDDY_STATE_VALUE);
  uint32_t l = reg(b, "l", EDDY_STATE_LIST);
  uint32_t m = reg(b, "m", EDDY_STATE_MAP);
  enc key = mp_int(1), val = mp_int(2), ns = mp_int(3);
  eddy_slice out;

  /* key groups at both edges of the range work, outside is refused */
  eddy_row r = row_of(v, 43, &key, NULL);
  CHECK_EQ_INT(eddy_backend_put(b, &r, val.data, val.len), EDDY_OK);
  r.key_group = 85;
  CHECK_EQ_INT(eddy_backend_put(b, &r, val.data, val.len), EDDY_OK);
  r.key_group = 42;
  CHECK_EQ_INT(eddy_backend_put(b, &r, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "key group 42 is outside this backend's range [43, 85]");
  r.key_group = 86;
  CHECK_EQ_INT(eddy_backend_get(b, &r, &out), EDDY_EINVAL);
  CHECK(contains(eddy_backend_errmsg(b), "key group 86"));
  r.key_group = -1;
  CHECK_EQ_INT(eddy_backend_clear(b, &r), EDDY_EINVAL);
  r.key_group = 1000;
  CHECK_EQ_INT(eddy_backend_list_append(b, &r, val.data, val.len), EDDY_EINVAL);

  /* no key, empty key, namespace length without bytes, unknown state */
  r = row_of(v, 50, &key, NULL);
  r.key = NULL;
  CHECK_EQ_INT(eddy_backend_get(b, &r, &out), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "a state access needs a current key");
  CHECK_EQ_INT(eddy_backend_put(b, &r, val.data, val.len), EDDY_EINVAL);
  r = row_of(v, 50, &key, NULL);
  r.key_len = 0;
  CHECK_EQ_INT(eddy_backend_put(b, &r, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_clear(b, &r), EDDY_EINVAL);
  r = row_of(v, 50, &key, &ns);
  r.ns = NULL;
  CHECK_EQ_INT(eddy_backend_get(b, &r, &out), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "namespace length without bytes");
  r = row_of(99, 50, &key, NULL);
  CHECK_EQ_INT(eddy_backend_get(b, &r, &out), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "unknown state id 99");
  eddy_backend_cursor *c = NULL;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, 3, &c), EDDY_EINVAL);
  CHECK(c == NULL);

  /* the wrong kind of access names the state and its kind */
  eddy_row rv = row_of(v, 50, &key, NULL), rl = row_of(l, 50, &key, NULL),
           rm = row_of(m, 50, &key, NULL);
  CHECK_EQ_INT(eddy_backend_list_append(b, &rv, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "state 'v' is a value state, not a list state");
  CHECK_EQ_INT(eddy_backend_map_get(b, &rv, key.data, key.len, &out), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_get(b, &rl, &out), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "state 'l' is a list state, not a value state");
  CHECK_EQ_INT(eddy_backend_put(b, &rl, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_map_put(b, &rl, key.data, key.len, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_put(b, &rm, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "state 'm' is a map state, not a value state");
  CHECK_EQ_INT(eddy_backend_list_get(b, &rm, &out), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_list_set(b, &rm, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &rl, &out), EDDY_EINVAL);

  /* empty values and map keys */
  CHECK_EQ_INT(eddy_backend_put(b, &rv, val.data, 0), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "cannot store an empty value");
  check_absent(b, &rv);
  CHECK_EQ_INT(eddy_backend_map_put(b, &rm, key.data, 0, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_map_put(b, &rm, key.data, key.len, val.data, 0), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_map_get(b, &rm, key.data, 0, &out), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "empty map key");
  CHECK_EQ_INT(eddy_backend_map_remove(b, &rm, key.data, 0), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &rm, &out), EDDY_ENOTFOUND);
  eddy_backend_destroy(b);
}

static void check_list(eddy_backend *b, const eddy_row *r, const void *want,
                       size_t len)
{
  eddy_slice got = {NULL, 0};
  CHECK_EQ_INT(eddy_backend_list_get(b, r, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, want, len);
}

static void test_lists(void)
{
  eddy_backend *b = new_backend(0, 127);
  uint32_t s = reg(b, "events", EDDY_STATE_LIST);
  enc key = mp_str("k"), ns = mp_window(0, 10);
  eddy_row r = row_of(s, 0, &key, NULL), rn = row_of(s, 0, &key, &ns);
  eddy_slice got;
  CHECK_EQ_INT(eddy_backend_list_get(b, &r, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_list_append(b, &r, "", 0), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_get(b, &r, &got), EDDY_ENOTFOUND);

  eddy_buf want = EDDY_BUF_INIT, elems = EDDY_BUF_INIT;
  enc one = mp_int(1);
  CHECK_EQ_INT(eddy_backend_list_append(b, &r, one.data, one.len), EDDY_OK);
  eddy_buf_append(&want, one.data, one.len);
  check_list(b, &r, want.data, want.len);
  /* several elements in one call */
  eddy_mp_write_str(&elems, "two", 3);
  eddy_mp_write_int(&elems, 300);
  eddy_mp_write_array(&elems, 2);
  eddy_mp_write_nil(&elems);
  eddy_mp_write_float(&elems, 2.5);
  CHECK_EQ_INT(eddy_backend_list_append(b, &r, elems.data, elems.len), EDDY_OK);
  eddy_buf_append(&want, elems.data, elems.len);
  check_list(b, &r, want.data, want.len);
  CHECK_EQ_INT(eddy_backend_list_get(b, &rn, &got), EDDY_ENOTFOUND);

  /* many appends (growth) */
  for (int i = 0; i < 5000; i++) {
    enc e = mp_int(i * 1000);
    CHECK_EQ_INT(eddy_backend_list_append(b, &r, e.data, e.len), EDDY_OK);
    eddy_buf_append(&want, e.data, e.len);
  }
  check_list(b, &r, want.data, want.len);

  /* a list appended to itself doubles */
  CHECK_EQ_INT(eddy_backend_list_get(b, &r, &got), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_append(b, &r, got.data, got.len), EDDY_OK);
  size_t before = want.len;
  CHECK_EQ_INT(eddy_buf_reserve(&want, before), EDDY_OK);
  eddy_buf_append(&want, want.data, before);
  check_list(b, &r, want.data, want.len);
  /* and set to a part of itself */
  CHECK_EQ_INT(eddy_backend_list_get(b, &r, &got), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_set(b, &r, (const char *)got.data + one.len,
                                     elems.len), EDDY_OK);
  check_list(b, &r, elems.data, elems.len);

  /* set replaces, longer or shorter; set to nothing removes */
  CHECK_EQ_INT(eddy_backend_list_set(b, &r, want.data, want.len), EDDY_OK);
  check_list(b, &r, want.data, want.len);
  CHECK_EQ_INT(eddy_backend_list_set(b, &r, one.data, one.len), EDDY_OK);
  check_list(b, &r, one.data, one.len);
  CHECK_EQ_INT(eddy_backend_list_append(b, &r, one.data, one.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_append(b, &r, one.data, one.len), EDDY_OK);
  check_list(b, &r, "\x01\x01\x01", 3);
  CHECK_EQ_INT(eddy_backend_list_set(b, &r, NULL, 0), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_get(b, &r, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_list_set(b, &r, NULL, 0), EDDY_OK);

  /* set creates; clear removes */
  CHECK_EQ_INT(eddy_backend_list_set(b, &rn, elems.data, elems.len), EDDY_OK);
  check_list(b, &rn, elems.data, elems.len);
  CHECK_EQ_INT(eddy_backend_list_get(b, &r, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_clear(b, &rn), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_get(b, &rn, &got), EDDY_ENOTFOUND);
  eddy_buf_free(&want);
  eddy_buf_free(&elems);
  eddy_backend_destroy(b);
}

/* Walks entries (user key, value, ...) and checks the user keys ascend
 * strictly; returns the number of entries. */
static int count_sorted_entries(const void *data, size_t len)
{
  eddy_mp_reader rd;
  eddy_mp_reader_init(&rd, data, len);
  const unsigned char *prev = NULL;
  size_t prev_len = 0;
  int n = 0;
  while (!eddy_mp_reader_done(&rd)) {
    const unsigned char *k = rd.p;
    if (eddy_mp_skip(&rd) != EDDY_OK) {
      CHECK(!"malformed user key in entries");
      return -1;
    }
    size_t klen = (size_t)(rd.p - k);
    if (prev != NULL && eddy_mp_compare(prev, prev_len, k, klen) >= 0)
      CHECK(!"entries out of order");
    prev = k;
    prev_len = klen;
    if (eddy_mp_skip(&rd) != EDDY_OK) {
      CHECK(!"malformed value in entries");
      return -1;
    }
    n++;
  }
  return n;
}

/* User keys of mixed types: integers of several widths and strings. */
static enc map_key(int k)
{
  if (k % 3 == 0)
    return mp_int(k * 997 - 100000);
  if (k % 3 == 2)
    return mp_int(k);
  char s[16];
  snprintf(s, sizeof s, "key%d", k);
  return mp_str(s);
}

static void test_maps(void)
{
  eddy_backend *b = new_backend(0, 127);
  uint32_t s = reg(b, "m", EDDY_STATE_MAP);
  enc key = mp_str("k"), ns = mp_window(5, 6);
  eddy_row r = row_of(s, 77, &key, NULL), rn = row_of(s, 77, &key, &ns);
  eddy_slice got;
  enc a = mp_str("a"), x = mp_int(10), y = mp_str("a longer value than before");
  CHECK_EQ_INT(eddy_backend_map_get(b, &r, a.data, a.len, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_remove(b, &r, a.data, a.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r, a.data, a.len, x.data, x.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_get(b, &r, a.data, a.len, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, x.data, x.len);
  CHECK_EQ_INT(eddy_backend_map_get(b, &rn, a.data, a.len, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r, a.data, a.len, y.data, y.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_get(b, &r, a.data, a.len, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, y.data, y.len);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &r, &got), EDDY_OK);
  CHECK_EQ_INT(got.len, a.len + y.len);
  CHECK_MEM(got.data, a.len, a.data, a.len);
  /* removing the last entry removes the row */
  CHECK_EQ_INT(eddy_backend_map_remove(b, &r, a.data, a.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &r, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_get(b, &r, a.data, a.len, &got), EDDY_ENOTFOUND);
  eddy_backend_cursor *c;
  eddy_row cr;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_cursor_next(c, &cr, &got), EDDY_EEOF);
  eddy_backend_cursor_close(c);

  /* many keys of mixed types in random order come out sorted bytewise */
  enum { N = 600 };
  int order[N];
  for (int i = 0; i < N; i++)
    order[i] = i;
  shuffle(order, N);
  for (int i = 0; i < N; i++) {
    int k = order[i];
    enc uk = map_key(k), val = mp_int(k);
    CHECK_EQ_INT(eddy_backend_map_put(b, &rn, uk.data, uk.len, val.data, val.len), EDDY_OK);
  }
  CHECK_EQ_INT(eddy_backend_map_entries(b, &rn, &got), EDDY_OK);
  CHECK_EQ_INT(count_sorted_entries(got.data, got.len), N);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &r, &got), EDDY_ENOTFOUND);

  /* the exact bytes for a few known keys: bytewise, the string "key"
   * (0xa3 ...) sorts between 2 and 200 (0xcc 0xc8) */
  eddy_row r3 = row_of(s, 3, &key, NULL);
  enc k200 = mp_int(200), k1 = mp_int(1), kstr = mp_str("key"), k2 = mp_int(2);
  enc v = mp_int(0);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r3, kstr.data, kstr.len, v.data, v.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r3, k200.data, k200.len, v.data, v.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r3, k2.data, k2.len, v.data, v.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r3, k1.data, k1.len, v.data, v.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &r3, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, "\x01\x00\x02\x00\xa3key\x00\xcc\xc8\x00", 12);
  /* a value handed back from map_get */
  CHECK_EQ_INT(eddy_backend_map_get(b, &r3, k200.data, k200.len, &got), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r3, k200.data, k200.len, got.data, got.len), EDDY_OK);

  /* remove every entry in another random order */
  shuffle(order, N);
  for (int i = 0; i < N; i++) {
    enc uk = map_key(order[i]);
    CHECK_EQ_INT(eddy_backend_map_get(b, &rn, uk.data, uk.len, &got), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_map_remove(b, &rn, uk.data, uk.len), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_map_get(b, &rn, uk.data, uk.len, &got), EDDY_ENOTFOUND);
    if (i == N / 2) {
      CHECK_EQ_INT(eddy_backend_map_entries(b, &rn, &got), EDDY_OK);
      CHECK_EQ_INT(count_sorted_entries(got.data, got.len), N - N / 2 - 1);
    }
    /* now and then, every entry not yet removed is still found */
    int lost = 0;
    for (int j = i + 1; i % 50 == 0 && j < N; j++) {
      enc other = map_key(order[j]), want = mp_int(order[j]);
      lost += eddy_backend_map_get(b, &rn, other.data, other.len, &got) != EDDY_OK ||
              got.len != want.len || memcmp(got.data, want.data, want.len) != 0;
    }
    CHECK_EQ_INT(lost, 0);
  }
  CHECK_EQ_INT(eddy_backend_map_entries(b, &rn, &got), EDDY_ENOTFOUND);

  /* clear removes a whole map */
  CHECK_EQ_INT(eddy_backend_clear(b, &r3), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &r3, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_get(b, &r3, k1.data, k1.len, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r3, k1.data, k1.len, v.data, v.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_entries(b, &r3, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, "\x01\x00", 2);
  eddy_backend_destroy(b); /* with rows left, for the leak checker */
}

/* A row a test expects from a cursor. */
typedef struct want_row {
  int kg;
  enc key;
  enc ns;
  enc value;
} want_row;

static int cmp_want(const void *x, const void *y)
{
  const want_row *a = x, *b = y;
  if (a->kg != b->kg)
    return a->kg < b->kg ? -1 : 1;
  int c = eddy_mp_compare(a->key.data, a->key.len, b->key.data, b->key.len);
  return c ? c : eddy_mp_compare(a->ns.data, a->ns.len, b->ns.data, b->ns.len);
}

static void check_cursor(eddy_backend_cursor *c, uint32_t s,
                         const want_row *want, int n)
{
  eddy_row r;
  eddy_slice v;
  for (int i = 0; i < n; i++) {
    CHECK_EQ_INT(eddy_backend_cursor_next(c, &r, &v), EDDY_OK);
    CHECK_EQ_INT(r.state, s);
    CHECK_EQ_INT(r.key_group, want[i].kg);
    CHECK_MEM(r.key, r.key_len, want[i].key.data, want[i].key.len);
    CHECK_MEM(r.ns, r.ns_len, want[i].ns.data, want[i].ns.len);
    CHECK_MEM(v.data, v.len, want[i].value.data, want[i].value.len);
  }
  CHECK_EQ_INT(eddy_backend_cursor_next(c, &r, &v), EDDY_EEOF);
  CHECK_EQ_INT(eddy_backend_cursor_next(c, &r, &v), EDDY_EEOF);
}

static void test_cursor_order(void)
{
  eddy_backend *b = new_backend(0, 127);
  uint32_t s = reg(b, "v", EDDY_STATE_VALUE);
  uint32_t other = reg(b, "other", EDDY_STATE_VALUE);
  eddy_backend_cursor *c = NULL;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c), EDDY_OK);
  check_cursor(c, s, NULL, 0);
  eddy_backend_cursor_close(c);
  eddy_backend_cursor_close(NULL);

  /* rows written in random order across key groups, keys (strings whose
   * length byte sorts before their text, integers of several encodings)
   * and namespaces */
  enum { NK = 12, NN = 3, NG = 4 };
  static const int groups[NG] = {127, 0, 64, 3};
  static const char *const strs[NK / 2] = {"", "a", "ab", "b", "ba", "k"};
  want_row want[NK * NN * NG];
  int n = 0;
  for (int g = 0; g < NG; g++)
    for (int k = 0; k < NK; k++)
      for (int w = 0; w < NN; w++) {
        want_row *x = &want[n++];
        x->kg = groups[g];
        x->key = k % 2 ? mp_int(k * 40 - 200) : mp_str(strs[k / 2]);
        x->ns = w == 0 ? (enc){{0}, 0} : mp_window(w * 100, w * 100 + 50);
        x->value = mp_int(n * 3);
      }
  qsort(want, (size_t)n, sizeof *want, cmp_want);

  int order[NK * NN * NG];
  for (int i = 0; i < n; i++)
    order[i] = i;
  shuffle(order, n);
  for (int i = 0; i < n; i++) {
    const want_row *x = &want[order[i]];
    eddy_row r = row_of(s, x->kg, &x->key, x->ns.len ? &x->ns : NULL);
    CHECK_EQ_INT(eddy_backend_put(b, &r, x->value.data, x->value.len), EDDY_OK);
  }
  enc k = mp_int(1);
  eddy_row ro = row_of(other, 5, &k, NULL);
  CHECK_EQ_INT(eddy_backend_put(b, &ro, k.data, k.len), EDDY_OK);

  CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c), EDDY_OK);
  check_cursor(c, s, want, n);
  eddy_backend_cursor_close(c);

  /* the row a cursor hands out addresses the same row for get */
  eddy_row r;
  eddy_slice v, direct;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c), EDDY_OK);
  while (eddy_backend_cursor_next(c, &r, &v) == EDDY_OK) {
    CHECK_EQ_INT(eddy_backend_get(b, &r, &direct), EDDY_OK);
    CHECK_MEM(direct.data, direct.len, v.data, v.len);
  }
  eddy_backend_cursor_close(c);

  want_row only = {5, k, {{0}, 0}, k};
  CHECK_EQ_INT(eddy_backend_cursor_open(b, other, &c), EDDY_OK);
  check_cursor(c, other, &only, 1);
  eddy_backend_cursor_close(c);
  eddy_backend_destroy(b);
}

static void test_cursor_snapshot(void)
{
  eddy_backend *b = new_backend(10, 20);
  uint32_t s = reg(b, "v", EDDY_STATE_VALUE);
  enum { N = 200 };
  want_row want[N];
  for (int i = 0; i < N; i++) {
    want[i].kg = 10 + i % 11;
    want[i].key = mp_int(i);
    want[i].ns = (enc){{0}, 0};
    want[i].value = mp_int(i + 1000);
    eddy_row r = row_of(s, want[i].kg, &want[i].key, NULL);
    CHECK_EQ_INT(eddy_backend_put(b, &r, want[i].value.data, want[i].value.len), EDDY_OK);
  }
  qsort(want, N, sizeof *want, cmp_want);

  eddy_backend_cursor *c1 = NULL, *c2 = NULL;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c1), EDDY_OK);
  /* read part of it, then write: overwrite, clear, add */
  eddy_row r;
  eddy_slice v;
  for (int i = 0; i < N / 2; i++) {
    CHECK_EQ_INT(eddy_backend_cursor_next(c1, &r, &v), EDDY_OK);
    CHECK_MEM(v.data, v.len, want[i].value.data, want[i].value.len);
  }
  enc big = mp_str("a value much longer than any of the integers");
  for (int i = 0; i < N; i++) {
    eddy_row w = row_of(s, want[i].kg, &want[i].key, NULL);
    if (i % 3 == 0)
      CHECK_EQ_INT(eddy_backend_clear(b, &w), EDDY_OK);
    else
      CHECK_EQ_INT(eddy_backend_put(b, &w, big.data, big.len), EDDY_OK);
    enc extra = mp_int(100000 + i);
    w = row_of(s, want[i].kg, &extra, NULL);
    CHECK_EQ_INT(eddy_backend_put(b, &w, big.data, big.len), EDDY_OK);
  }
  CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c2), EDDY_OK);
  check_cursor(c1, s, want + N / 2, N - N / 2);
  eddy_backend_cursor_close(c1);

  /* the second cursor sees the writes; destroy the rows under it first */
  int rows = 0, overwritten = 0;
  for (int i = 0; i < N; i++) {
    eddy_row w = row_of(s, want[i].kg, &want[i].key, NULL);
    CHECK_EQ_INT(eddy_backend_clear(b, &w), EDDY_OK);
  }
  int prev_kg = -1;
  while (eddy_backend_cursor_next(c2, &r, &v) == EDDY_OK) {
    rows++;
    CHECK(r.key_group >= prev_kg);
    prev_kg = r.key_group;
    CHECK_MEM(v.data, v.len, big.data, big.len);
    eddy_mp_reader rd;
    eddy_mp_item it;
    eddy_mp_reader_init(&rd, r.key, r.key_len);
    CHECK_EQ_INT(eddy_mp_read(&rd, &it), EDDY_OK);
    if (it.v.i < 100000)
      overwritten++;
  }
  CHECK_EQ_INT(rows, N + N - (N + 2) / 3);
  CHECK_EQ_INT(overwritten, N - (N + 2) / 3);
  eddy_backend_cursor_close(c2);
  eddy_backend_destroy(b);
}

static void test_cursor_lists_maps(void)
{
  eddy_backend *b = new_backend(0, 127);
  uint32_t l = reg(b, "l", EDDY_STATE_LIST);
  uint32_t m = reg(b, "m", EDDY_STATE_MAP);
  enc k1 = mp_str("b"), k2 = mp_str("a"), ns = mp_window(1, 2);
  eddy_row l1 = row_of(l, 8, &k1, NULL), l2 = row_of(l, 8, &k2, &ns);
  eddy_row m1 = row_of(m, 2, &k1, NULL), m2 = row_of(m, 1, &k1, NULL);
  CHECK_EQ_INT(eddy_backend_list_append(b, &l1, "\x01\x02", 2), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_append(b, &l1, "\x03", 1), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_append(b, &l2, "\x04", 1), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &m1, "\x05", 1, "\x06", 1), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &m1, "\x02", 1, "\xa1x", 2), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &m2, "\x07", 1, "\x08", 1), EDDY_OK);

  eddy_backend_cursor *c;
  want_row wl[2] = {{8, k2, ns, {"\x04", 1}}, {8, k1, {{0}, 0}, {"\x01\x02\x03", 3}}};
  CHECK_EQ_INT(eddy_backend_cursor_open(b, l, &c), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_set(b, &l1, NULL, 0), EDDY_OK);
  check_cursor(c, l, wl, 2);
  eddy_backend_cursor_close(c);

  want_row wm[2] = {{1, k1, {{0}, 0}, {"\x07\x08", 2}},
                    {2, k1, {{0}, 0}, {"\x02\xa1x\x05\x06", 5}}};
  CHECK_EQ_INT(eddy_backend_cursor_open(b, m, &c), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_remove(b, &m2, "\x07", 1), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_put(b, &m1, "\x00", 1, "\x00", 1), EDDY_OK);
  check_cursor(c, m, wm, 2);
  eddy_backend_cursor_close(c);
  eddy_backend_destroy(b);
}

/* Tables kept as full as they get (24 keys fit 32 slots), so that removals
 * shift long probe runs, across the end of the slot array too. (Probe runs
 * are the heap's; RocksDB runs a sixth of it, the same model checks.) */
#ifdef SUITE_ROCKSDB
#define CHURN_OPS 10000
#else
#define CHURN_OPS 60000
#endif

static void test_churn(void)
{
  enum { NKEYS = 24, OPS = CHURN_OPS };
  eddy_backend *b = new_backend(7, 7);
  uint32_t v = reg(b, "v", EDDY_STATE_VALUE), m = reg(b, "m", EDDY_STATE_MAP);
  enc mkey = mp_str("m");
  eddy_row rm = row_of(m, 7, &mkey, NULL);
  int val[NKEYS] = {0}, ent[NKEYS] = {0}, lost = 0;
  for (int op = 0; op < OPS; op++) {
    int k = (int)(rnd() % NKEYS), ver = 1 + (int)(rnd() % 100);
    enc key = mp_int(k * 1000003), x = mp_int(ver);
    eddy_row r = row_of(v, 7, &key, NULL);
    if (rnd() % 2) {
      CHECK_EQ_INT(eddy_backend_put(b, &r, x.data, x.len), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_map_put(b, &rm, key.data, key.len, x.data, x.len), EDDY_OK);
      val[k] = ent[k] = ver;
    } else {
      CHECK_EQ_INT(eddy_backend_clear(b, &r), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_map_remove(b, &rm, key.data, key.len), EDDY_OK);
      val[k] = ent[k] = 0;
    }
    for (int j = 0; j < NKEYS; j++) {
      enc kj = mp_int(j * 1000003), want = mp_int(val[j]);
      eddy_row rj = row_of(v, 7, &kj, NULL);
      eddy_slice got;
      int rc = eddy_backend_get(b, &rj, &got);
      lost += val[j] ? rc != EDDY_OK || got.len != want.len ||
                           memcmp(got.data, want.data, want.len) != 0
                     : rc != EDDY_ENOTFOUND;
      rc = eddy_backend_map_get(b, &rm, kj.data, kj.len, &got);
      lost += ent[j] ? rc != EDDY_OK || got.len != want.len ||
                           memcmp(got.data, want.data, want.len) != 0
                     : rc != EDDY_ENOTFOUND;
    }
  }
  CHECK_EQ_INT(lost, 0);
  eddy_backend_destroy(b);
}

/* Deterministic value of key i at version ver, 20 to 50 bytes. */
static enc stress_value(int i, int ver)
{
  char s[48];
  int len = 18 + (i * 7 + ver * 13) % 30;
  for (int j = 0; j < len; j++)
    s[j] = (char)('a' + (i + j * ver) % 26);
  s[len] = '\0';
  return mp_str(s);
}

static void test_stress(void)
{
  enum { N = 100000 };
  eddy_backend *b = new_backend(0, MAXP - 1);
  uint32_t s = reg(b, "big", EDDY_STATE_VALUE);
  static int kg[N];
  static unsigned char ver[N]; /* 0 = absent */
  for (int i = 0; i < N; i++) {
    enc key = mp_int(i);
    CHECK_EQ_INT(eddy_key_group(key.data, key.len, MAXP, &kg[i]), EDDY_OK);
    eddy_row r = row_of(s, kg[i], &key, NULL);
    enc v = stress_value(i, 1);
    if (eddy_backend_put(b, &r, v.data, v.len) != EDDY_OK)
      CHECK(!"put failed");
    ver[i] = 1;
  }
  /* random rewrites (shorter and longer) and clears */
  for (int round = 0; round < 3 * N; round++) {
    int i = (int)(rnd() % N);
    enc key = mp_int(i);
    eddy_row r = row_of(s, kg[i], &key, NULL);
    if (rnd() % 5 == 0) {
      CHECK_EQ_INT(eddy_backend_clear(b, &r), EDDY_OK);
      ver[i] = 0;
    } else {
      int nv = 1 + (int)(rnd() % 200);
      enc v = stress_value(i, nv);
      if (eddy_backend_put(b, &r, v.data, v.len) != EDDY_OK)
        CHECK(!"put failed");
      ver[i] = (unsigned char)nv;
    }
  }
  int present = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    enc key = mp_int(i);
    eddy_row r = row_of(s, kg[i], &key, NULL);
    eddy_slice got;
    int rc = eddy_backend_get(b, &r, &got);
    if (ver[i] == 0) {
      bad += rc != EDDY_ENOTFOUND;
      continue;
    }
    present++;
    enc want = stress_value(i, ver[i]);
    bad += rc != EDDY_OK || got.len != want.len ||
           memcmp(got.data, want.data, want.len) != 0;
  }
  CHECK_EQ_INT(bad, 0);

  /* a cursor sees every present row once, in order */
  eddy_backend_cursor *c;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c), EDDY_OK);
  eddy_row r;
  eddy_slice v;
  int rows = 0, disorder = 0, prev_kg = -1;
  eddy_buf prev = EDDY_BUF_INIT; /* the slices last only until the next call */
  while (eddy_backend_cursor_next(c, &r, &v) == EDDY_OK) {
    rows++;
    if (prev_kg > r.key_group ||
        (prev_kg == r.key_group && eddy_mp_compare(prev.data, prev.len, r.key, r.key_len) >= 0))
      disorder++;
    prev_kg = r.key_group;
    eddy_buf_reset(&prev);
    CHECK_EQ_INT(eddy_buf_append(&prev, r.key, r.key_len), EDDY_OK);
  }
  eddy_buf_free(&prev);
  CHECK_EQ_INT(rows, present);
  CHECK_EQ_INT(disorder, 0);
  eddy_backend_cursor_close(c);
  eddy_backend_destroy(b);
}

/* ---- out of memory: every failure leaves the backend as it was ---- */

enum { FK = 64, FU = 16 };

/* What the backend should hold for key k: a value version (0 = absent), a
 * list length, and a version per map user key (0 = absent). */
typedef struct model_row {
  int val;
  int nlist;
  int map[FU];
} model_row;

static enc fault_value(int k, int ver)
{
  char s[64];
  int len = ver % 60;
  memset(s, 'a' + k % 26, (size_t)len);
  s[len] = '\0';
  return mp_str(s);
}

/* List element j of key k is the fixint (k + j) % 100. */
static size_t fault_list(int k, int n, unsigned char *out)
{
  for (int j = 0; j < n; j++)
    out[j] = (unsigned char)((k + j) % 100);
  return (size_t)n;
}

static eddy_row fault_row(uint32_t state, int k, const enc *key, const enc *ns)
{
  return row_of(state, (k * 37) % MAXP, key, k % 3 == 0 ? ns : NULL);
}

static int model_rows(const model_row *m, int which)
{
  int n = 0;
  for (int k = 0; k < FK; k++) {
    int any = 0;
    for (int u = 0; u < FU; u++)
      any |= m[k].map[u] != 0;
    n += which == 0 ? m[k].val != 0 : which == 1 ? m[k].nlist != 0 : any;
  }
  return n;
}

static void verify_model(eddy_backend *b, const uint32_t *ids,
                         const model_row *m)
{
  enc ns = mp_window(1, 2);
  unsigned char want[512];
  eddy_slice got;
  for (int k = 0; k < FK; k++) {
    enc key = mp_int(k);
    eddy_row rv = fault_row(ids[0], k, &key, &ns), rl = fault_row(ids[1], k, &key, &ns),
             rm = fault_row(ids[2], k, &key, &ns);
    if (m[k].val == 0) {
      check_absent(b, &rv);
    } else {
      enc v = fault_value(k, m[k].val);
      check_value(b, &rv, &v);
    }
    if (m[k].nlist == 0)
      CHECK_EQ_INT(eddy_backend_list_get(b, &rl, &got), EDDY_ENOTFOUND);
    else
      check_list(b, &rl, want, fault_list(k, m[k].nlist, want));
    size_t n = 0;
    for (int u = 0; u < FU; u++)
      if (m[k].map[u] != 0) {
        want[n++] = (unsigned char)u;
        want[n++] = (unsigned char)m[k].map[u];
      }
    int rc = eddy_backend_map_entries(b, &rm, &got);
    CHECK_EQ_INT(rc, n ? EDDY_OK : EDDY_ENOTFOUND);
    if (rc == EDDY_OK)
      CHECK_MEM(got.data, got.len, want, n);
  }
  for (int which = 0; which < 3; which++) {
    eddy_backend_cursor *c;
    eddy_row r;
    CHECK_EQ_INT(eddy_backend_cursor_open(b, ids[which], &c), EDDY_OK);
    int rows = 0;
    while (eddy_backend_cursor_next(c, &r, &got) == EDDY_OK)
      rows++;
    CHECK_EQ_INT(rows, model_rows(m, which));
    eddy_backend_cursor_close(c);
  }
}

/* One random operation with one allocation in four failing; the model m
 * follows what succeeded. Returns 1 if the operation ran out of memory. */
static int fault_change(eddy_backend *b, const uint32_t *ids, model_row *m)
{
  enc ns = mp_window(1, 2);
  unsigned char elems[16];
  int rc;
  int k = (int)(rnd() % FK), op = (int)(rnd() % 8), u = (int)(rnd() % FU);
  int ver = 1 + (int)(rnd() % 200), nset = (int)(rnd() % 8);
  enc key = mp_int(k), v = fault_value(k, ver), uv = mp_int(ver % 100 + 1);
  enc uk = mp_int(u);
  eddy_row rv = fault_row(ids[0], k, &key, &ns), rl = fault_row(ids[1], k, &key, &ns),
           rm = fault_row(ids[2], k, &key, &ns);
  eddy_slice got;
  eddy_backend_cursor *c = NULL;
  fail_one_in = 4;
  switch (op) {
  case 0:
    rc = eddy_backend_put(b, &rv, v.data, v.len);
    break;
  case 1:
    rc = eddy_backend_clear(b, k % 2 ? &rv : &rm);
    break;
  case 2:
    elems[0] = (unsigned char)((k + m[k].nlist) % 100);
    rc = m[k].nlist < 200 ? eddy_backend_list_append(b, &rl, elems, 1)
                          : eddy_backend_clear(b, &rl);
    break;
  case 3:
    rc = eddy_backend_list_set(b, &rl, elems, fault_list(k, nset, elems));
    break;
  case 4:
    rc = eddy_backend_map_put(b, &rm, uk.data, uk.len, uv.data, uv.len);
    break;
  case 5:
    rc = eddy_backend_map_remove(b, &rm, uk.data, uk.len);
    break;
  case 6:
    rc = eddy_backend_map_entries(b, &rm, &got);
    break;
  default:
    rc = eddy_backend_cursor_open(b, ids[u % 3], &c);
    break;
  }
  fail_one_in = 0;
  if (rc == EDDY_ENOMEM) {
    CHECK(contains(eddy_backend_errmsg(b), "out of memory"));
    return 1;
  }
  CHECK(rc == EDDY_OK || (op == 6 && rc == EDDY_ENOTFOUND));
  switch (op) {
  case 0: m[k].val = ver; break;
  case 1:
    if (k % 2)
      m[k].val = 0;
    else
      memset(m[k].map, 0, sizeof m[k].map);
    break;
  case 2: m[k].nlist = m[k].nlist < 200 ? m[k].nlist + 1 : 0; break;
  case 3: m[k].nlist = nset; break;
  case 4: m[k].map[u] = ver % 100 + 1; break;
  case 5: m[k].map[u] = 0; break;
  case 7: {
    int rows = 0;
    eddy_row r;
    while (eddy_backend_cursor_next(c, &r, &got) == EDDY_OK)
      rows++;
    CHECK_EQ_INT(rows, model_rows(m, u % 3));
    eddy_backend_cursor_close(c);
    break;
  }
  default: break;
  }
  return 0;
}

static void test_out_of_memory(void)
{
  eddy_backend *b = new_backend(0, MAXP - 1);
  static const char *const names[3] = {"v", "l", "m"};
  static const eddy_state_kind kinds[3] = {EDDY_STATE_VALUE, EDDY_STATE_LIST,
                                           EDDY_STATE_MAP};
  uint32_t ids[3];
  int rc, enomem = 0;
  for (int i = 0; i < 3; i++) {
    do {
      fail_one_in = 2;
      rc = eddy_backend_register(b, names[i], kinds[i], &ids[i]);
      fail_one_in = 0;
      CHECK(rc == EDDY_OK || rc == EDDY_ENOMEM);
      CHECK_EQ_INT(eddy_backend_state_count(b), rc == EDDY_OK ? i + 1 : i);
      enomem += rc == EDDY_ENOMEM;
    } while (rc != EDDY_OK);
  }

  static model_row m[FK];
  memset(m, 0, sizeof m);
  for (int step = 0; step < 30000; step++)
    enomem += fault_change(b, ids, m);
  verify_model(b, ids, m);
  CHECK(FAULTS ? enomem > 1000 : enomem == 0);
  eddy_backend_destroy(b);
}

/* Tables that grow (uthash doubles its buckets) while allocations fail. */
static void test_out_of_memory_growth(void)
{
  enum { N = 3000 };
  eddy_backend *b = new_backend(0, 0);
  uint32_t v = reg(b, "v", EDDY_STATE_VALUE), m = reg(b, "m", EDDY_STATE_MAP);
  enc mkey = mp_str("the map"), ns = mp_window(7, 8);
  eddy_row rm = row_of(m, 0, &mkey, &ns);
  int enomem = 0, rc;
  for (int i = 0; i < N; i++) {
    enc key = mp_int(i * 7919), val = stress_value(i, 3);
    eddy_row rv = row_of(v, 0, &key, NULL);
    do {
      fail_one_in = 3;
      rc = eddy_backend_put(b, &rv, val.data, val.len);
      fail_one_in = 0;
      enomem += rc == EDDY_ENOMEM;
    } while (rc == EDDY_ENOMEM);
    CHECK_EQ_INT(rc, EDDY_OK);
    do {
      fail_one_in = 3;
      rc = eddy_backend_map_put(b, &rm, key.data, key.len, val.data, val.len);
      fail_one_in = 0;
      enomem += rc == EDDY_ENOMEM;
    } while (rc == EDDY_ENOMEM);
    CHECK_EQ_INT(rc, EDDY_OK);
  }
  int bad = 0;
  for (int i = 0; i < N; i++) {
    enc key = mp_int(i * 7919), val = stress_value(i, 3);
    eddy_row rv = row_of(v, 0, &key, NULL);
    eddy_slice got;
    bad += eddy_backend_get(b, &rv, &got) != EDDY_OK ||
           got.len != val.len || memcmp(got.data, val.data, val.len) != 0;
    bad += eddy_backend_map_get(b, &rm, key.data, key.len, &got) != EDDY_OK ||
           got.len != val.len || memcmp(got.data, val.data, val.len) != 0;
  }
  CHECK_EQ_INT(bad, 0);
  eddy_slice got;
  CHECK_EQ_INT(eddy_backend_map_entries(b, &rm, &got), EDDY_OK);
  CHECK_EQ_INT(count_sorted_entries(got.data, got.len), N);
  eddy_backend_cursor *c;
  eddy_row r;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, v, &c), EDDY_OK);
  int rows = 0;
  while (eddy_backend_cursor_next(c, &r, &got) == EDDY_OK)
    rows++;
  CHECK_EQ_INT(rows, N);
  eddy_backend_cursor_close(c);
  CHECK(FAULTS ? enomem > 100 : enomem == 0);
  eddy_backend_destroy(b);
}

/* ---- copy-on-write snapshots ---- */

/* Rows collected as records (state, key group, key, namespace, value) and
 * sorted bytewise: two dumps are equal exactly when they hold the same
 * rows, whatever order they were read in. */
typedef struct dump {
  eddy_buf data;
  size_t (*recs)[2]; /* offset and length of each record in data */
  size_t n;
  size_t cap;
} dump;

static void put_u32(eddy_buf *b, size_t v)
{
  unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 8), (unsigned char)v};
  CHECK_EQ_INT(eddy_buf_append(b, x, 4), EDDY_OK);
}

static void dump_add(dump *d, const eddy_row *r, eddy_slice v)
{
  if (d->n == d->cap) {
    d->cap = d->cap ? 2 * d->cap : 64;
    d->recs = realloc(d->recs, d->cap * sizeof *d->recs);
    CHECK(d->recs != NULL);
  }
  size_t start = d->data.len;
  put_u32(&d->data, r->state);
  put_u32(&d->data, (size_t)r->key_group);
  put_u32(&d->data, r->key_len);
  CHECK_EQ_INT(eddy_buf_append(&d->data, r->key, r->key_len), EDDY_OK);
  put_u32(&d->data, r->ns_len);
  CHECK_EQ_INT(eddy_buf_append(&d->data, r->ns, r->ns_len), EDDY_OK);
  put_u32(&d->data, v.len);
  CHECK_EQ_INT(eddy_buf_append(&d->data, v.data, v.len), EDDY_OK);
  d->recs[d->n][0] = start;
  d->recs[d->n++][1] = d->data.len - start;
}

static int cmp_recs(const void *x, const void *y, void *data)
{
  const size_t *a = x, *b = y;
  const unsigned char *p = data;
  return eddy_mp_compare(p + a[0], a[1], p + b[0], b[1]);
}

/* The sorted records, concatenated, in out (owned by the caller). */
static void dump_finish(dump *d, eddy_buf *out)
{
  if (d->n > 1)
    qsort_r(d->recs, d->n, sizeof *d->recs, cmp_recs, d->data.data);
  eddy_buf_init(out);
  for (size_t i = 0; i < d->n; i++)
    CHECK_EQ_INT(eddy_buf_append(out, d->data.data + d->recs[i][0], d->recs[i][1]),
                 EDDY_OK);
  eddy_buf_free(&d->data);
  free(d->recs);
}

/* Every row of b, read through cursors. */
static void dump_backend(eddy_backend *b, eddy_buf *out)
{
  dump d = {EDDY_BUF_INIT, NULL, 0, 0};
  for (uint32_t s = 0; s < eddy_backend_state_count(b); s++) {
    eddy_backend_cursor *c;
    eddy_row r;
    eddy_slice v;
    CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c), EDDY_OK);
    while (eddy_backend_cursor_next(c, &r, &v) == EDDY_OK)
      dump_add(&d, &r, v);
    eddy_backend_cursor_close(c);
  }
  dump_finish(&d, out);
}

/* Every row of a snapshot, which must come in ascending key group. With
 * faults, next runs with fault injection and is retried when it fails. */
static void dump_snapshot(eddy_backend_snapshot *s, eddy_buf *out, unsigned faults)
{
  dump d = {EDDY_BUF_INIT, NULL, 0, 0};
  eddy_row r;
  eddy_slice v;
  int rc, prev_kg = -1;
  for (;;) {
    fail_one_in = faults;
    rc = eddy_backend_snapshot_next(s, &r, &v);
    fail_one_in = 0;
    if (rc == EDDY_EEOF)
      break;
    if (rc == EDDY_ENOMEM) {
      CHECK(contains(eddy_backend_snapshot_errmsg(s), "out of memory"));
      continue;
    }
    CHECK_EQ_INT(rc, EDDY_OK);
    CHECK(r.key_group >= prev_kg);
    prev_kg = r.key_group;
    dump_add(&d, &r, v);
  }
  CHECK_EQ_INT(eddy_backend_snapshot_next(s, &r, &v), EDDY_EEOF);
  dump_finish(&d, out);
}

static void check_snapshot(eddy_backend_snapshot *s, const eddy_buf *want,
                           unsigned faults)
{
  eddy_buf got;
  dump_snapshot(s, &got, faults);
  CHECK_MEM(got.data, got.len, want->data, want->len);
  eddy_buf_free(&got);
}

static void test_snapshot_empty(void)
{
  eddy_backend *b = new_backend(3, 9);
  eddy_backend_snapshot *s = NULL, *t = NULL;
  eddy_row r;
  eddy_slice v;
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, NULL), EDDY_EINVAL);
  CHECK(contains(eddy_backend_errmsg(b), "no result pointer"));
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, &s), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_snapshot_next(s, &r, &v), EDDY_EEOF);
  uint32_t id = reg(b, "v", EDDY_STATE_VALUE);
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, &t), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_snapshot_next(t, &r, &v), EDDY_EEOF);
  enc k = mp_int(1);
  eddy_row w = row_of(id, 4, &k, NULL);
  CHECK_EQ_INT(eddy_backend_put(b, &w, k.data, k.len), EDDY_OK);
  /* neither sees the row, nor the state registered after the first */
  CHECK_EQ_INT(eddy_backend_snapshot_next(s, &r, &v), EDDY_EEOF);
  CHECK_EQ_INT(eddy_backend_snapshot_next(t, &r, &v), EDDY_EEOF);
  eddy_backend_snapshot_close(s);
  eddy_backend_snapshot_close(t);
  eddy_backend_snapshot_close(NULL);
  check_value(b, &w, &k);
  eddy_backend_destroy(b);
}

/* Fills three states with a bit of everything: values (some in
 * namespaces), lists and maps, over a few key groups of [0, 127]. */
static void fill_kinds(eddy_backend *b, const uint32_t *ids, int n, int ver)
{
  enc ns = mp_window(0, 100);
  for (int i = 0; i < n; i++) {
    enc key = mp_int(i), v = stress_value(i, ver);
    int kg = (i * 5) % 7;
    eddy_row rv = row_of(ids[0], kg, &key, i % 4 == 0 ? &ns : NULL);
    eddy_row rl = row_of(ids[1], kg, &key, NULL), rm = row_of(ids[2], kg, &key, NULL);
    CHECK_EQ_INT(eddy_backend_put(b, &rv, v.data, v.len), EDDY_OK);
    for (int j = 0; j <= i % 3; j++) {
      unsigned char e = (unsigned char)((i + j + ver) % 100);
      CHECK_EQ_INT(eddy_backend_list_append(b, &rl, &e, 1), EDDY_OK);
    }
    for (int u = 0; u <= i % 4; u++) {
      enc uk = mp_int(u * 1000), uv = mp_int(i + u + ver);
      CHECK_EQ_INT(eddy_backend_map_put(b, &rm, uk.data, uk.len, uv.data, uv.len),
                   EDDY_OK);
    }
  }
}

static void test_snapshot_every_kind(void)
{
  enum { N = 40 };
  eddy_backend *b = new_backend(0, 127);
  uint32_t ids[3] = {reg(b, "v", EDDY_STATE_VALUE), reg(b, "l", EDDY_STATE_LIST),
                     reg(b, "m", EDDY_STATE_MAP)};
  fill_kinds(b, ids, N, 1);
  eddy_buf want;
  dump_backend(b, &want);
  eddy_backend_snapshot *s;
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, &s), EDDY_OK);

  /* every kind of change to every kind of row */
  enc ns = mp_window(0, 100);
  eddy_slice got;
  for (int i = 0; i < N; i++) {
    enc key = mp_int(i), v = stress_value(i, 7), uk = mp_int(1000), nk = mp_int(-5);
    int kg = (i * 5) % 7;
    eddy_row rv = row_of(ids[0], kg, &key, i % 4 == 0 ? &ns : NULL);
    eddy_row rl = row_of(ids[1], kg, &key, NULL), rm = row_of(ids[2], kg, &key, NULL);
    switch (i % 5) {
    case 0:
      CHECK_EQ_INT(eddy_backend_put(b, &rv, v.data, v.len), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_list_append(b, &rl, "\x05\x06", 2), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_map_put(b, &rm, uk.data, uk.len, v.data, v.len), EDDY_OK);
      break;
    case 1:
      CHECK_EQ_INT(eddy_backend_clear(b, &rv), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_list_set(b, &rl, "\x07", 1), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_map_remove(b, &rm, uk.data, uk.len), EDDY_OK);
      break;
    case 2:
      /* slices of the shared rows handed back: the copy reads them */
      CHECK_EQ_INT(eddy_backend_get(b, &rv, &got), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_put(b, &rv, got.data, got.len), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_list_get(b, &rl, &got), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_list_append(b, &rl, got.data, got.len), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_clear(b, &rm), EDDY_OK);
      break;
    case 3:
      CHECK_EQ_INT(eddy_backend_list_set(b, &rl, NULL, 0), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_map_put(b, &rm, nk.data, nk.len, nk.data, nk.len), EDDY_OK);
      for (int u = 0; u <= i % 4; u++) { /* down to an absent row */
        enc ku = mp_int(u * 1000);
        CHECK_EQ_INT(eddy_backend_map_remove(b, &rm, ku.data, ku.len), EDDY_OK);
      }
      break;
    default:
      CHECK_EQ_INT(eddy_backend_map_get(b, &rm, uk.data, uk.len, &got), i % 4 ? EDDY_OK
                                                                             : EDDY_ENOTFOUND);
      for (int u = 0; u <= i % 4; u++) { /* the whole map goes */
        enc ku = mp_int(u * 1000);
        CHECK_EQ_INT(eddy_backend_map_remove(b, &rm, ku.data, ku.len), EDDY_OK);
      }
      CHECK_EQ_INT(eddy_backend_map_entries(b, &rm, &got), EDDY_ENOTFOUND);
      break;
    }
  }
  /* new rows, enough to grow and rehash the tables of the key groups the
   * snapshot copied, and a state registered after the open */
  uint32_t late = reg(b, "late", EDDY_STATE_VALUE);
  for (int i = N; i < 40 * N; i++) {
    enc key = mp_int(i), v = stress_value(i, 2);
    eddy_row rv = row_of(ids[0], i % 7, &key, NULL), rx = row_of(late, i % 7, &key, NULL);
    CHECK_EQ_INT(eddy_backend_put(b, &rv, v.data, v.len), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_put(b, &rx, v.data, v.len), EDDY_OK);
  }
  check_snapshot(s, &want, 0);
  eddy_backend_snapshot_close(s);

  /* the live state is right after the close too */
  eddy_buf live, again;
  dump_backend(b, &live);
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, &s), EDDY_OK);
  check_snapshot(s, &live, 0);
  eddy_backend_snapshot_close(s);
  dump_backend(b, &again);
  CHECK_MEM(live.data, live.len, again.data, again.len);
  CHECK(live.len != want.len || memcmp(live.data, want.data, want.len) != 0);
  eddy_buf_free(&live);
  eddy_buf_free(&again);
  eddy_buf_free(&want);
  eddy_backend_destroy(b);
}

/* One random change to the three states of fill_kinds, over keys [0, n). */
static void random_change(eddy_backend *b, const uint32_t *ids, int n)
{
  int i = (int)(rnd() % (uint32_t)n), kg = (i * 5) % 7;
  enc key = mp_int(i), v = stress_value(i, (int)(rnd() % 50)), uk = mp_int((int)(rnd() % 5) * 1000);
  eddy_row rv = row_of(ids[0], kg, &key, NULL), rl = row_of(ids[1], kg, &key, NULL),
           rm = row_of(ids[2], kg, &key, NULL);
  unsigned char e = (unsigned char)(rnd() % 100);
  switch (rnd() % 9) {
  case 0: CHECK_EQ_INT(eddy_backend_put(b, &rv, v.data, v.len), EDDY_OK); break;
  case 1: CHECK_EQ_INT(eddy_backend_clear(b, &rv), EDDY_OK); break;
  case 2: CHECK_EQ_INT(eddy_backend_list_append(b, &rl, &e, 1), EDDY_OK); break;
  case 3: CHECK_EQ_INT(eddy_backend_list_set(b, &rl, &e, e % 2), EDDY_OK); break;
  case 4: CHECK_EQ_INT(eddy_backend_clear(b, &rl), EDDY_OK); break;
  case 5:
  case 6:
    CHECK_EQ_INT(eddy_backend_map_put(b, &rm, uk.data, uk.len, v.data, v.len), EDDY_OK);
    break;
  case 7: CHECK_EQ_INT(eddy_backend_map_remove(b, &rm, uk.data, uk.len), EDDY_OK); break;
  default: CHECK_EQ_INT(eddy_backend_clear(b, &rm), EDDY_OK); break;
  }
}

/* Three snapshots with changes between them, closed in each of the six
 * orders, with more changes between the closes. Each is read just before
 * its close, so it is read after the others' closes freed what they held. */
static void test_snapshot_close_orders(void)
{
  static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                   {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (int o = 0; o < 6; o++) {
    eddy_backend *b = new_backend(0, 127);
    uint32_t ids[3] = {reg(b, "v", EDDY_STATE_VALUE), reg(b, "l", EDDY_STATE_LIST),
                       reg(b, "m", EDDY_STATE_MAP)};
    fill_kinds(b, ids, 30, o);
    eddy_backend_snapshot *s[3];
    eddy_buf want[3];
    for (int k = 0; k < 3; k++) {
      dump_backend(b, &want[k]);
      CHECK_EQ_INT(eddy_backend_snapshot_open(b, &s[k]), EDDY_OK);
      for (int c = 0; c < 150; c++)
        random_change(b, ids, 36);
    }
    for (int k = 0; k < 3; k++) {
      int which = orders[o][k];
      for (int c = 0; c < 100; c++)
        random_change(b, ids, 36);
      check_snapshot(s[which], &want[which], 0);
      eddy_backend_snapshot_close(s[which]);
      eddy_buf_free(&want[which]);
    }
    eddy_buf live;
    dump_backend(b, &live);
    eddy_backend_snapshot *last;
    CHECK_EQ_INT(eddy_backend_snapshot_open(b, &last), EDDY_OK);
    check_snapshot(last, &live, 0);
    eddy_backend_snapshot_close(last);
    eddy_buf_free(&live);
    eddy_backend_destroy(b);
  }
}

/* Up to five snapshots open at once, opened and closed at random between
 * random changes; some are closed half read, some never read. */
static void test_snapshot_random(void)
{
  enum { MAXS = 5, STEPS = 6000 };
  eddy_backend *b = new_backend(0, 127);
  uint32_t ids[3] = {reg(b, "v", EDDY_STATE_VALUE), reg(b, "l", EDDY_STATE_LIST),
                     reg(b, "m", EDDY_STATE_MAP)};
  fill_kinds(b, ids, 50, 3);
  eddy_backend_snapshot *s[MAXS];
  eddy_buf want[MAXS];
  int open = 0, checked = 0;
  for (int step = 0; step < STEPS; step++) {
    uint32_t what = rnd() % 100;
    if (what < 3 && open < MAXS) {
      dump_backend(b, &want[open]);
      CHECK_EQ_INT(eddy_backend_snapshot_open(b, &s[open]), EDDY_OK);
      open++;
    } else if (what < 6 && open > 0) {
      int k = (int)(rnd() % (uint32_t)open);
      eddy_row r;
      eddy_slice v;
      switch (rnd() % 3) {
      case 0:
        check_snapshot(s[k], &want[k], 0);
        checked++;
        break;
      case 1:
        for (uint32_t n = rnd() % 40; n > 0; n--)
          if (eddy_backend_snapshot_next(s[k], &r, &v) != EDDY_OK)
            break;
        break;
      default:
        break;
      }
      eddy_backend_snapshot_close(s[k]);
      eddy_buf_free(&want[k]);
      s[k] = s[--open];
      want[k] = want[open];
    } else {
      random_change(b, ids, 70);
    }
  }
  while (open > 0) {
    open--;
    check_snapshot(s[open], &want[open], 0);
    eddy_backend_snapshot_close(s[open]);
    eddy_buf_free(&want[open]);
  }
  CHECK(checked > 10);
  eddy_backend_destroy(b);
}

/* Out of memory while snapshots are open: a change that fails leaves the
 * live rows as they were (the model of fault_change) and the snapshots as
 * they were opened; opening and reading fail cleanly too. */
static void test_snapshot_out_of_memory(void)
{
  enum { MAXS = 3 };
  eddy_backend *b = new_backend(0, MAXP - 1);
  uint32_t ids[3] = {reg(b, "v", EDDY_STATE_VALUE), reg(b, "l", EDDY_STATE_LIST),
                     reg(b, "m", EDDY_STATE_MAP)};
  static model_row m[FK];
  memset(m, 0, sizeof m);
  eddy_backend_snapshot *s[MAXS];
  eddy_buf want[MAXS];
  int open = 0, enomem = 0, checked = 0;
  for (int step = 0; step < 30000; step++) {
    uint32_t what = rnd() % 100;
    if (what < 2 && open < MAXS) {
      fail_one_in = 4;
      int rc = eddy_backend_snapshot_open(b, &s[open]);
      fail_one_in = 0;
      if (rc == EDDY_ENOMEM) {
        enomem++;
        CHECK(contains(eddy_backend_errmsg(b), "out of memory"));
        continue;
      }
      CHECK_EQ_INT(rc, EDDY_OK);
      dump_backend(b, &want[open++]);
    } else if (what < 4 && open > 0) {
      int k = (int)(rnd() % (uint32_t)open);
      check_snapshot(s[k], &want[k], 4);
      checked++;
      eddy_backend_snapshot_close(s[k]);
      eddy_buf_free(&want[k]);
      s[k] = s[--open];
      want[k] = want[open];
    } else {
      enomem += fault_change(b, ids, m);
    }
  }
  verify_model(b, ids, m);
  while (open > 0) {
    open--;
    check_snapshot(s[open], &want[open], 4);
    eddy_backend_snapshot_close(s[open]);
    eddy_buf_free(&want[open]);
  }
  CHECK(checked > 100);
  CHECK(FAULTS ? enomem > 1000 : enomem == 0);
  eddy_backend_destroy(b);
}

/* ---- a snapshot read by a second thread while the main thread writes ---- */

enum { TN = 20000 };

/* What key i holds in version ver: built without CHECK or rnd, which
 * belong to the main thread. */
static size_t thread_value(int i, int ver, unsigned char *out)
{
  size_t len = 10 + (size_t)((i + ver) % 20);
  out[0] = (unsigned char)(0xa0 | len);
  for (size_t j = 0; j < len; j++)
    out[1 + j] = (unsigned char)('a' + (i * 7 + ver + (int)j) % 26);
  return 1 + len;
}

static size_t thread_list(int i, int ver, unsigned char *out)
{
  size_t n = 1 + (size_t)(i % 5);
  for (size_t j = 0; j < n; j++)
    out[j] = (unsigned char)((i + (int)j + ver) % 100);
  return n;
}

/* Entries u -> value for u in [0, i % 3], fixints both, so their order by
 * bytes is the order of u. */
static size_t thread_map(int i, int ver, unsigned char *out)
{
  size_t n = 0;
  for (int u = 0; u <= i % 3; u++) {
    out[n++] = (unsigned char)u;
    out[n++] = (unsigned char)((i + u + ver) % 100);
  }
  return n;
}

typedef struct thread_read {
  eddy_backend_snapshot *snap;
  uint32_t ids[3];
  int ver;
  long rows[3];
  long bad;
} thread_read;

static void *read_snapshot(void *p)
{
  thread_read *a = p;
  eddy_row r;
  eddy_slice v;
  unsigned char want[64];
  int rc, prev = -1;
  while ((rc = eddy_backend_snapshot_next(a->snap, &r, &v)) == EDDY_OK) {
    eddy_mp_reader rd;
    eddy_mp_item it;
    eddy_mp_reader_init(&rd, r.key, r.key_len);
    int j = r.state == a->ids[0] ? 0 : r.state == a->ids[1] ? 1 : 2;
    if (r.key_group < prev || eddy_mp_read(&rd, &it) != EDDY_OK || it.type != EDDY_MP_INT ||
        it.v.i < 0 || it.v.i >= TN || r.ns_len != 0) {
      a->bad++;
      continue;
    }
    prev = r.key_group;
    int i = (int)it.v.i;
    size_t n = j == 0 ? thread_value(i, a->ver, want)
               : j == 1 ? thread_list(i, a->ver, want)
                        : thread_map(i, a->ver, want);
    a->bad += v.len != n || memcmp(v.data, want, n) != 0;
    a->rows[j]++;
  }
  a->bad += rc != EDDY_EEOF;
  return NULL;
}

static int thread_kg[2 * TN];

static eddy_row thread_row(uint32_t state, const enc *key, int i)
{
  return row_of(state, thread_kg[i], key, NULL);
}

/* Makes the three states hold version ver of keys [0, TN) and nothing
 * else. */
static void thread_fill(eddy_backend *b, const uint32_t *ids, int ver)
{
  unsigned char buf[64];
  for (int i = 0; i < 2 * TN; i++) {
    enc key = mp_int(i);
    eddy_row rv = thread_row(ids[0], &key, i), rl = thread_row(ids[1], &key, i),
             rm = thread_row(ids[2], &key, i);
    if (i >= TN) {
      CHECK_EQ_INT(eddy_backend_clear(b, &rv), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_clear(b, &rl), EDDY_OK);
      CHECK_EQ_INT(eddy_backend_clear(b, &rm), EDDY_OK);
      continue;
    }
    CHECK_EQ_INT(eddy_backend_put(b, &rv, buf, thread_value(i, ver, buf)), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_list_set(b, &rl, buf, thread_list(i, ver, buf)), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_clear(b, &rm), EDDY_OK);
    size_t n = thread_map(i, ver, buf);
    for (size_t e = 0; e < n; e += 2)
      CHECK_EQ_INT(eddy_backend_map_put(b, &rm, buf + e, 1, buf + e + 1, 1), EDDY_OK);
  }
}

/* Random reads and changes of every kind over keys [0, 2 TN): the upper
 * half adds rows, which grows the tables. */
static void thread_churn(eddy_backend *b, const uint32_t *ids, int ops)
{
  unsigned char buf[64];
  eddy_slice got;
  for (int op = 0; op < ops; op++) {
    int i = (int)(rnd() % (2 * TN)), ver = 2 + (int)(rnd() % 50);
    enc key = mp_int(i);
    eddy_row rv = thread_row(ids[0], &key, i), rl = thread_row(ids[1], &key, i),
             rm = thread_row(ids[2], &key, i);
    unsigned char u = (unsigned char)(rnd() % 4);
    int rc = EDDY_OK;
    switch (rnd() % 10) {
    case 0: rc = eddy_backend_put(b, &rv, buf, thread_value(i, ver, buf)); break;
    case 1: rc = eddy_backend_clear(b, &rv); break;
    case 2: rc = eddy_backend_list_append(b, &rl, &u, 1); break;
    case 3: rc = eddy_backend_list_set(b, &rl, buf, thread_list(i, ver, buf)); break;
    case 4: rc = eddy_backend_map_put(b, &rm, &u, 1, &u, 1); break;
    case 5: rc = eddy_backend_map_remove(b, &rm, &u, 1); break;
    case 6: rc = eddy_backend_clear(b, &rm); break;
    case 7:
      rc = eddy_backend_get(b, &rv, &got);
      rc = rc == EDDY_ENOTFOUND ? EDDY_OK : rc;
      break;
    case 8:
      rc = eddy_backend_map_entries(b, &rm, &got);
      rc = rc == EDDY_ENOTFOUND ? EDDY_OK : rc;
      break;
    default:
      rc = eddy_backend_list_get(b, &rl, &got);
      rc = rc == EDDY_ENOTFOUND ? EDDY_OK : rc;
      break;
    }
    if (rc != EDDY_OK)
      CHECK(!"a change failed");
  }
}

/* ---- restoring: whole rows in bulk ---- */

/* The payload of a map row: user key u -> value u * 10 + ver, u < n. */
static size_t map_payload(int n, int ver, unsigned char *out)
{
  size_t len = 0;
  for (int u = 0; u < n; u++) {
    out[len++] = (unsigned char)u;
    out[len++] = (unsigned char)((u * 10 + ver) % 128);
  }
  return len;
}

/* Restores key i's rows of every state the way a snapshot hands them
 * over, key group by key group and state by state; rows come back as get,
 * list_get and map_entries give them. */
enum { RN = 3000 };

static int restore_kg[RN];

static void restore_all(eddy_backend *b, const uint32_t *ids, int ver)
{
  enc ns = mp_window(5, 6);
  unsigned char buf[64];
  for (int g = 0; g < MAXP; g++)
    for (int st = 0; st < 3; st++)
      for (int i = 0; i < RN; i++) {
        if (restore_kg[i] != g)
          continue;
        enc key = mp_int(i), v = stress_value(i, ver);
        eddy_row r = row_of(ids[st], g, &key, i % 4 == 0 ? &ns : NULL);
        int rc;
        if (st == 0)
          rc = eddy_backend_restore_row(b, &r, v.data, v.len);
        else if (st == 1)
          rc = eddy_backend_restore_row(b, &r, buf, fault_list(i, 1 + i % 9, buf));
        else
          rc = eddy_backend_restore_row(b, &r, buf, map_payload(1 + i % 5, ver, buf));
        if (rc != EDDY_OK)
          CHECK(!"restore_row failed");
      }
  CHECK_EQ_INT(eddy_backend_restore_done(b), EDDY_OK);
}

/* Whether key i's rows are what restore_all(ver) gave them. */
static int restored_right(eddy_backend *b, const uint32_t *ids, int i, int ver)
{
  enc ns = mp_window(5, 6), key = mp_int(i), v = stress_value(i, ver);
  unsigned char want[64];
  eddy_slice got;
  int bad = 0;
  eddy_row r = row_of(ids[0], restore_kg[i], &key, i % 4 == 0 ? &ns : NULL);
  bad += eddy_backend_get(b, &r, &got) != EDDY_OK || got.len != v.len ||
         memcmp(got.data, v.data, v.len) != 0;
  r.state = ids[1];
  size_t n = fault_list(i, 1 + i % 9, want);
  bad += eddy_backend_list_get(b, &r, &got) != EDDY_OK || got.len != n ||
         memcmp(got.data, want, n) != 0;
  r.state = ids[2];
  n = map_payload(1 + i % 5, ver, want);
  bad += eddy_backend_map_entries(b, &r, &got) != EDDY_OK || got.len != n ||
         memcmp(got.data, want, n) != 0;
  return bad;
}

static void count_rows(eddy_backend *b, uint32_t state, int want)
{
  eddy_backend_cursor *c;
  eddy_row r;
  eddy_slice v;
  int rows = 0;
  CHECK_EQ_INT(eddy_backend_cursor_open(b, state, &c), EDDY_OK);
  while (eddy_backend_cursor_next(c, &r, &v) == EDDY_OK)
    rows++;
  eddy_backend_cursor_close(c);
  CHECK_EQ_INT(rows, want);
}

static void test_restore(void)
{
  eddy_backend *b = new_backend(0, MAXP - 1);
  uint32_t ids[3] = {reg(b, "v", EDDY_STATE_VALUE), reg(b, "l", EDDY_STATE_LIST),
                     reg(b, "m", EDDY_STATE_MAP)};
  for (int i = 0; i < RN; i++) {
    enc key = mp_int(i);
    CHECK_EQ_INT(eddy_key_group(key.data, key.len, MAXP, &restore_kg[i]), EDDY_OK);
  }
  restore_all(b, ids, 1);
  int bad = 0;
  for (int i = 0; i < RN; i++)
    bad += restored_right(b, ids, i, 1);
  CHECK_EQ_INT(bad, 0);
  for (int st = 0; st < 3; st++)
    count_rows(b, ids[st], RN);

  /* restored rows change like any others: values in place, shorter and
   * longer, lists grown past their restored size, maps changed, rows
   * cleared (the leak and address checkers watch the payloads that live
   * inside their rows) */
  enc k7 = mp_int(7), k8 = mp_int(8), k9 = mp_int(9), k10 = mp_int(10);
  enc same = stress_value(7, 2), shorter = mp_int(1),
      longer = mp_str("a value longer than any the restore gave this key at all");
  eddy_row r7 = row_of(ids[0], restore_kg[7], &k7, NULL);
  CHECK_EQ_INT(eddy_backend_put(b, &r7, same.data, same.len), EDDY_OK);
  check_value(b, &r7, &same);
  CHECK_EQ_INT(eddy_backend_put(b, &r7, shorter.data, shorter.len), EDDY_OK);
  check_value(b, &r7, &shorter);
  CHECK_EQ_INT(eddy_backend_put(b, &r7, longer.data, longer.len), EDDY_OK);
  check_value(b, &r7, &longer);
  eddy_row l9 = row_of(ids[1], restore_kg[9], &k9, NULL);
  unsigned char want[256];
  size_t n = fault_list(9, 1 + 9 % 9, want);
  eddy_slice got;
  CHECK_EQ_INT(eddy_backend_list_get(b, &l9, &got), EDDY_OK);
  for (int j = 0; j < 100; j++) {
    want[n++] = (unsigned char)j;
    CHECK_EQ_INT(eddy_backend_list_append(b, &l9, &want[n - 1], 1), EDDY_OK);
  }
  check_list(b, &l9, want, n);
  /* a restored list appended to itself */
  eddy_row l10 = row_of(ids[1], restore_kg[10], &k10, NULL);
  n = fault_list(10, 1 + 10 % 9, want);
  memcpy(want + n, want, n);
  CHECK_EQ_INT(eddy_backend_list_get(b, &l10, &got), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_list_append(b, &l10, got.data, got.len), EDDY_OK);
  check_list(b, &l10, want, 2 * n);
  eddy_row m9 = row_of(ids[2], restore_kg[9], &k9, NULL);
  enc uk = mp_int(77), uv = mp_str("a new entry of a restored map");
  CHECK_EQ_INT(eddy_backend_map_put(b, &m9, uk.data, uk.len, uv.data, uv.len), EDDY_OK);
  unsigned char u0 = 0, big[300];
  memset(big, 0x41, sizeof big); /* fixints */
  CHECK_EQ_INT(eddy_backend_map_put(b, &m9, &u0, 1, big, 1), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_get(b, &m9, &u0, 1, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, big, 1);
  CHECK_EQ_INT(eddy_backend_map_remove(b, &m9, &u0, 1), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_get(b, &m9, &u0, 1, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_get(b, &m9, uk.data, uk.len, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, uv.data, uv.len);
  enc ns = mp_window(5, 6); /* keys 0, 4, 8... have a namespace */
  eddy_row r8 = row_of(ids[0], restore_kg[8], &k8, &ns);
  CHECK_EQ_INT(eddy_backend_clear(b, &r8), EDDY_OK);
  check_absent(b, &r8);
  CHECK_EQ_INT(restored_right(b, ids, 11, 1), 0);
  count_rows(b, ids[0], RN - 1);
  count_rows(b, ids[1], RN);
  count_rows(b, ids[2], RN);

  /* a snapshot sees the restored rows as they were while they change */
  eddy_backend_snapshot *snap;
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, &snap), EDDY_OK);
  enc k12 = mp_int(12), after = mp_str("changed after the snapshot");
  eddy_row r12 = row_of(ids[0], restore_kg[12], &k12, &ns);
  CHECK_EQ_INT(eddy_backend_put(b, &r12, after.data, after.len), EDDY_OK);
  eddy_row m12 = row_of(ids[2], restore_kg[12], &k12, &ns);
  CHECK_EQ_INT(eddy_backend_map_put(b, &m12, uk.data, uk.len, uv.data, uv.len), EDDY_OK);
  eddy_row l12 = row_of(ids[1], restore_kg[12], &k12, &ns);
  CHECK_EQ_INT(eddy_backend_list_append(b, &l12, "\x05", 1), EDDY_OK);
  eddy_row sr;
  eddy_slice sv;
  int seen = 0, stale = 0;
  while (eddy_backend_snapshot_next(snap, &sr, &sv) == EDDY_OK) {
    if (sr.key_len != k12.len || memcmp(sr.key, k12.data, k12.len) != 0)
      continue;
    seen++;
    if (sr.state == ids[0]) {
      enc v = stress_value(12, 1);
      stale += sv.len != v.len || memcmp(sv.data, v.data, v.len) != 0;
    } else if (sr.state == ids[1]) {
      stale += sv.len != fault_list(12, 1 + 12 % 9, want) || memcmp(sv.data, want, sv.len) != 0;
    } else {
      stale += sv.len != map_payload(1 + 12 % 5, 1, want) || memcmp(sv.data, want, sv.len) != 0;
    }
  }
  CHECK_EQ_INT(seen, 3);
  CHECK_EQ_INT(stale, 0);
  check_value(b, &r12, &after);

  /* restoring again while the snapshot is open replaces the rows the
   * snapshot still reads, and the snapshot keeps them */
  eddy_backend_snapshot *snap2;
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, &snap2), EDDY_OK);
  restore_all(b, ids, 2);
  bad = 0;
  for (int i = 0; i < RN; i++)
    bad += restored_right(b, ids, i, 2);
  CHECK_EQ_INT(bad, 0);
  for (int st = 0; st < 3; st++)
    count_rows(b, ids[st], RN); /* replaced, not added; key 8 is back */
  int rows = 0;
  stale = 0;
  while (eddy_backend_snapshot_next(snap2, &sr, &sv) == EDDY_OK) {
    rows++;
    if (sr.state == ids[0] && sr.key_len == k7.len && memcmp(sr.key, k7.data, k7.len) == 0)
      stale += sv.len != longer.len || memcmp(sv.data, longer.data, longer.len) != 0;
  }
  CHECK_EQ_INT(rows, 3 * RN - 1); /* without key 8's value */
  CHECK_EQ_INT(stale, 0);
  eddy_backend_snapshot_close(snap);
  eddy_backend_snapshot_close(snap2);
  eddy_backend_destroy(b);
}

/* A run of rows that is more than one batch, the same key twice in a run
 * and in a map's payload (the last one wins, as with put), runs of one
 * table that come back after another table's, and rows that replace rows
 * put before the restore. */
static void test_restore_runs(void)
{
  enum { BIG = 70000 };
  eddy_backend *b = new_backend(3, 3);
  uint32_t v = reg(b, "v", EDDY_STATE_VALUE), m = reg(b, "m", EDDY_STATE_MAP);
  enc before = mp_str("put before the restore"), kept = mp_str("not in the snapshot");
  enc k0 = mp_int(0), kx = mp_str("not restored");
  eddy_row r0 = row_of(v, 3, &k0, NULL), rx = row_of(v, 3, &kx, NULL);
  CHECK_EQ_INT(eddy_backend_put(b, &r0, before.data, before.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_put(b, &rx, kept.data, kept.len), EDDY_OK);
  for (int i = 0; i < BIG; i++) {
    enc key = mp_int(i), val = stress_value(i, 3);
    eddy_row r = row_of(v, 3, &key, NULL);
    if (eddy_backend_restore_row(b, &r, val.data, val.len) != EDDY_OK)
      CHECK(!"restore_row failed");
    if (i % 10000 == 5) {
      /* another table's run in between */
      eddy_row rm = row_of(m, 3, &key, NULL);
      unsigned char p[] = {1, 2, 3, 4, 1, 5}; /* user key 1 twice: 5 wins */
      CHECK_EQ_INT(eddy_backend_restore_row(b, &rm, p, sizeof p), EDDY_OK);
    }
  }
  /* the same key again, in the last run */
  enc again = mp_str("restored twice");
  eddy_row r9 = row_of(v, 3, &(enc){{0x09}, 1}, NULL);
  CHECK_EQ_INT(eddy_backend_restore_row(b, &r9, again.data, again.len), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_restore_done(b), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_restore_done(b), EDDY_OK); /* nothing left: fine */

  int bad = 0;
  for (int i = 0; i < BIG; i++) {
    enc key = mp_int(i), want = i == 9 ? again : stress_value(i, 3);
    eddy_row r = row_of(v, 3, &key, NULL);
    eddy_slice got;
    bad += eddy_backend_get(b, &r, &got) != EDDY_OK || got.len != want.len ||
           memcmp(got.data, want.data, want.len) != 0;
  }
  CHECK_EQ_INT(bad, 0);
  check_value(b, &rx, &kept);
  count_rows(b, v, BIG + 1);
  count_rows(b, m, BIG / 10000);
  enc k5 = mp_int(5);
  eddy_row m5 = row_of(m, 3, &k5, NULL);
  eddy_slice got;
  unsigned char entries[] = {1, 5, 3, 4};
  CHECK_EQ_INT(eddy_backend_map_entries(b, &m5, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, entries, sizeof entries);

  /* a restore that is never said to be done leaves nothing behind either */
  enc val = mp_int(1);
  CHECK_EQ_INT(eddy_backend_restore_row(b, &r0, val.data, val.len), EDDY_OK);
  eddy_backend_destroy(b);
}

/* What restore_row refuses, and why. */
static void test_restore_bad_rows(void)
{
  eddy_backend *b = new_backend(10, 20);
  uint32_t v = reg(b, "v", EDDY_STATE_VALUE), m = reg(b, "m", EDDY_STATE_MAP);
  enc key = mp_int(1), val = mp_int(2);
  eddy_row r = row_of(v, 10, &key, NULL);
  CHECK_EQ_INT(eddy_backend_restore_row(b, &r, val.data, 0), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "cannot restore an empty row");
  CHECK_EQ_INT(eddy_backend_restore_row(b, &r, NULL, 1), EDDY_EINVAL);
  r.key_group = 21;
  CHECK_EQ_INT(eddy_backend_restore_row(b, &r, val.data, val.len), EDDY_EINVAL);
  CHECK(contains(eddy_backend_errmsg(b), "key group 21 is outside"));
  r.key_group = 10;
  r.state = 7;
  CHECK_EQ_INT(eddy_backend_restore_row(b, &r, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "unknown state id 7");
  r.state = v;
  r.key_len = 0;
  CHECK_EQ_INT(eddy_backend_restore_row(b, &r, val.data, val.len), EDDY_EINVAL);
  /* a map's payload must be whole entries */
  eddy_row rm = row_of(m, 10, &key, NULL);
  unsigned char half[] = {1, 2, 3}, cut[] = {1, 0xa5, 'a'};
  CHECK_EQ_INT(eddy_backend_restore_row(b, &rm, half, sizeof half), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "state 'm': a map row's payload is not whole entries "
                                       "at byte 2");
  CHECK_EQ_INT(eddy_backend_restore_row(b, &rm, cut, sizeof cut), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_restore_done(b), EDDY_OK);
  count_rows(b, v, 0);
  count_rows(b, m, 0);
  eddy_backend_destroy(b);
}

/* Allocations fail while rows are restored: each failure says so, rows may
 * be lost but nothing is half there or leaked, and a restore run again
 * without failures gives everything. */
static void test_restore_out_of_memory(void)
{
  eddy_backend *b = new_backend(0, MAXP - 1);
  uint32_t ids[3] = {reg(b, "v", EDDY_STATE_VALUE), reg(b, "l", EDDY_STATE_LIST),
                     reg(b, "m", EDDY_STATE_MAP)};
  for (int i = 0; i < RN; i++) {
    enc key = mp_int(i);
    CHECK_EQ_INT(eddy_key_group(key.data, key.len, MAXP, &restore_kg[i]), EDDY_OK);
  }
  enc ns = mp_window(5, 6);
  unsigned char buf[64];
  int enomem = 0;
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < RN; i++) {
      int st = i % 3;
      enc key = mp_int(i), v = stress_value(i, 1);
      eddy_row r = row_of(ids[st], restore_kg[i], &key, i % 4 == 0 ? &ns : NULL);
      fail_one_in = 50;
      int rc = st == 0   ? eddy_backend_restore_row(b, &r, v.data, v.len)
               : st == 1 ? eddy_backend_restore_row(b, &r, buf, fault_list(i, 1 + i % 9, buf))
                         : eddy_backend_restore_row(b, &r, buf, map_payload(1 + i % 5, 1, buf));
      fail_one_in = 0;
      CHECK(rc == EDDY_OK || rc == EDDY_ENOMEM);
      if (rc == EDDY_ENOMEM) {
        CHECK(contains(eddy_backend_errmsg(b), "out of memory"));
        enomem++;
      }
    }
    fail_one_in = 3;
    int rc = eddy_backend_restore_done(b);
    fail_one_in = 0;
    CHECK(rc == EDDY_OK || rc == EDDY_ENOMEM);
    enomem += rc == EDDY_ENOMEM;
    /* whatever is there is whole */
    int bad = 0, present[3] = {0, 0, 0};
    for (int i = 0; i < RN; i++) {
      int st = i % 3;
      enc key = mp_int(i);
      eddy_row r = row_of(ids[st], restore_kg[i], &key, i % 4 == 0 ? &ns : NULL);
      eddy_slice got;
      rc = st == 0 ? eddy_backend_get(b, &r, &got)
           : st == 1 ? eddy_backend_list_get(b, &r, &got)
                     : eddy_backend_map_entries(b, &r, &got);
      if (rc == EDDY_ENOTFOUND)
        continue;
      present[st]++;
      enc v = stress_value(i, 1);
      size_t n = st == 0 ? v.len : st == 1 ? fault_list(i, 1 + i % 9, buf)
                                           : map_payload(1 + i % 5, 1, buf);
      bad += rc != EDDY_OK || got.len != n ||
             memcmp(got.data, st == 0 ? v.data : buf, n) != 0;
    }
    CHECK_EQ_INT(bad, 0);
    for (int st = 0; st < 3; st++)
      count_rows(b, ids[st], present[st]);
  }
  CHECK(FAULTS ? enomem > 10 : enomem == 0);
  eddy_backend_destroy(b);
}

/* Two snapshots, each read by its own thread while the main thread keeps
 * changing every row. Built with -fsanitize=thread, this is where
 * ThreadSanitizer checks that a writer thread reads nothing the main thread
 * writes or frees. */
static void test_snapshot_threads(void)
{
  eddy_backend *b = new_backend(0, MAXP - 1);
  uint32_t ids[3] = {reg(b, "v", EDDY_STATE_VALUE), reg(b, "l", EDDY_STATE_LIST),
                     reg(b, "m", EDDY_STATE_MAP)};
  for (int i = 0; i < 2 * TN; i++) {
    enc key = mp_int(i);
    CHECK_EQ_INT(eddy_key_group(key.data, key.len, MAXP, &thread_kg[i]), EDDY_OK);
  }
  thread_fill(b, ids, 0);
  thread_read a[2];
  pthread_t th[2];
  for (int k = 0; k < 2; k++) {
    if (k == 1)
      thread_fill(b, ids, 1);
    memset(&a[k], 0, sizeof a[k]);
    memcpy(a[k].ids, ids, sizeof ids);
    a[k].ver = k;
    CHECK_EQ_INT(eddy_backend_snapshot_open(b, &a[k].snap), EDDY_OK);
    CHECK_EQ_INT(pthread_create(&th[k], NULL, read_snapshot, &a[k]), 0);
    thread_churn(b, ids, 100000);
  }
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_INT(pthread_join(th[k], NULL), 0);
    CHECK_EQ_INT(a[k].bad, 0);
    CHECK_EQ_INT(a[k].rows[0], TN);
    CHECK_EQ_INT(a[k].rows[1], TN);
    CHECK_EQ_INT(a[k].rows[2], TN);
    eddy_backend_snapshot_close(a[k].snap);
  }
  eddy_backend_destroy(b);
}

TEST_MAIN(SUITE_NAME, TEST(test_create), TEST(test_register), TEST(test_values),
          TEST(test_namespaces), TEST(test_bad_rows), TEST(test_lists),
          TEST(test_maps), TEST(test_cursor_order), TEST(test_cursor_snapshot),
          TEST(test_cursor_lists_maps), TEST(test_churn), TEST(test_stress),
          TEST(test_out_of_memory), TEST(test_out_of_memory_growth),
          TEST(test_snapshot_empty), TEST(test_snapshot_every_kind),
          TEST(test_snapshot_close_orders), TEST(test_snapshot_random),
          TEST(test_snapshot_out_of_memory), TEST(test_snapshot_threads),
          TEST(test_restore), TEST(test_restore_runs), TEST(test_restore_bad_rows),
          TEST(test_restore_out_of_memory) SUITE_EXTRA_TESTS)
