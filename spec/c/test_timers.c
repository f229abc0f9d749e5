/*
 * The timer service: set semantics on (timestamp, key, namespace), the total
 * firing order of eddy's choice 2, the per-key-group operations, argument
 * checks, a randomized comparison with a plain sorted array, a million
 * timers against the clock, and out-of-memory at every allocation of a
 * registration.
 */
#include "test.h"

#include <setjmp.h>
#include <stdint.h>
#include <time.h>

#include "state/keygroup.h"
#include "state/timers.h"
#include "util/msgpack.h"

/* ---- fault injection ----
 *
 * Like SQLite's test builds: arm countdown = n and the nth allocation from
 * then on fails. Retrying an operation with n = 1, 2, 3, ... until it
 * succeeds fails each of its allocations once, in turn. The test binary
 * replaces the allocator for this, except under AddressSanitizer, which
 * owns it there. */
static unsigned long countdown;

#if defined(__SANITIZE_ADDRESS__)
#define FAULTS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULTS 0
#endif
#endif

#ifndef FAULTS
#define FAULTS 1
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);

static int injected_failure(void) { return countdown != 0 && --countdown == 0; }

void *malloc(size_t n) { return injected_failure() ? NULL : __libc_malloc(n); }

void *calloc(size_t n, size_t size)
{
  return injected_failure() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
  return injected_failure() ? NULL : __libc_realloc(p, n);
}
#endif

/* ---- helpers ---- */

/* xorshift64: deterministic, so a failure reproduces. */
static uint64_t seed = 0x2545f4914f6cdd1du;

static uint32_t rnd(void)
{
  seed ^= seed << 13;
  seed ^= seed >> 7;
  seed ^= seed << 17;
  return (uint32_t)(seed >> 32);
}

static const test_val none = {{0}, 0};

static eddy_timer tmr(int64_t ts, int kg, const test_val *key, const test_val *ns)
{
  eddy_timer t = {ts, kg, {key->b, key->len}, {ns->len ? ns->b : NULL, ns->len}};
  return t;
}

static eddy_timers *make(int maxp, int first, int last)
{
  eddy_timers *t = NULL;
  eddy_err err = {0, ""};
  CHECK_EQ_INT(eddy_timers_new(maxp, first, last, &t, &err), EDDY_OK);
  CHECK(t != NULL);
  return t;
}

static int reg(eddy_timers *t, eddy_timer_kind kind, int64_t ts, int kg,
               const test_val *key, const test_val *ns)
{
  eddy_timer tm = tmr(ts, kg, key, ns);
  int added = -1;
  CHECK_EQ_INT(eddy_timers_register(t, kind, &tm, &added), EDDY_OK);
  return added;
}

static void del(eddy_timers *t, eddy_timer_kind kind, int64_t ts, int kg,
                const test_val *key, const test_val *ns)
{
  eddy_timer tm = tmr(ts, kg, key, ns);
  CHECK_EQ_INT(eddy_timers_delete(t, kind, &tm), EDDY_OK);
}

static int same(const eddy_timer *got, int64_t ts, int kg, const test_val *key, const test_val *ns)
{
  return got->timestamp == ts && got->key_group == kg && got->key.len == key->len &&
         memcmp(got->key.data, key->b, key->len) == 0 && got->ns.len == ns->len &&
         (ns->len == 0 || memcmp(got->ns.data, ns->b, ns->len) == 0);
}

/* Pops the next timer (limit INT64_MAX) and checks it is the one given. */
static void expect_pop(eddy_timers *t, eddy_timer_kind kind, int64_t ts, int kg,
                       const test_val *key, const test_val *ns)
{
  eddy_timer got;
  CHECK_EQ_INT(eddy_timers_pop(t, kind, INT64_MAX, &got), EDDY_OK);
  CHECK(same(&got, ts, kg, key, ns));
}

static int contains(const char *s, const char *part)
{
  return s != NULL && strstr(s, part) != NULL;
}

/* The order the service must fire in, written out from the spec. */
static int spec_order(const eddy_timer *a, const eddy_timer *b)
{
  if (a->timestamp != b->timestamp)
    return a->timestamp < b->timestamp ? -1 : 1;
  if (a->key_group != b->key_group)
    return a->key_group < b->key_group ? -1 : 1;
  int c = eddy_mp_compare(a->key.data, a->key.len, b->key.data, b->key.len);
  return c != 0 ? c : eddy_mp_compare(a->ns.data, a->ns.len, b->ns.data, b->ns.len);
}

/* ---- tests ---- */

static void test_new(void)
{
  eddy_timers *t = (eddy_timers *)&t; /* not NULL: a failed new must clear it */
  eddy_err err = {0, ""};
  CHECK_EQ_INT(eddy_timers_new(128, 10, 5, &t, &err), EDDY_EINVAL);
  CHECK(contains(err.msg, "bad key-group range [10, 5] for max parallelism 128"));
  CHECK(t == NULL);
  CHECK_EQ_INT(eddy_timers_new(128, 0, 128, &t, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_new(128, -1, 3, &t, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_new(0, 0, 0, &t, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_new(32769, 0, 0, &t, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_new(128, 0, 127, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_new(128, 0, 127, &t, NULL), EDDY_OK);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 0);
  eddy_timers_free(t);
  CHECK_EQ_INT(eddy_timers_new(32768, 32767, 32767, &t, &err), EDDY_OK);
  eddy_timers_free(t);
  eddy_timers_free(NULL);
}

static void test_dedup(void)
{
  eddy_timers *t = make(128, 0, 127);
  test_val k = test_str("user-1"), w1 = test_int(1), w2 = test_int(2);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 100, 7, &k, &none), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 100, 7, &k, &none), 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 1);
  /* NULL for added is allowed */
  eddy_timer tm = tmr(100, 7, &k, &none);
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, NULL), EDDY_OK);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 1);

  /* same key and namespace, other timestamps: independent timers */
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 101, 7, &k, &none), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, -100, 7, &k, &none), 1);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 3);

  /* same timestamp and key, other namespaces */
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 100, 7, &k, &w1), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 100, 7, &k, &w2), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 100, 7, &k, &w2), 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 5);

  /* a namespace is not confused with the key bytes it would extend */
  test_val k2 = test_int(5), k3 = test_int(6);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 1, 3, &k2, &k3), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 1, 3, &k3, &k2), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 1, 3, &k2, &none), 1);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 8);

  /* once fired, the same triple can be registered again */
  eddy_timer got;
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, -100, &got), EDDY_OK);
  CHECK(same(&got, -100, 7, &k, &none));
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, -100, 7, &k, &none), 1);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 8);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 0);
  eddy_timers_free(t);
}

static void test_delete(void)
{
  eddy_timers *t = make(128, 0, 127);
  test_val a = test_str("a"), b = test_str("b"), w = test_int(9);
  reg(t, EDDY_TIMER_EVENT, 10, 1, &a, &none);
  reg(t, EDDY_TIMER_EVENT, 20, 1, &a, &none);
  reg(t, EDDY_TIMER_EVENT, 10, 1, &a, &w);
  reg(t, EDDY_TIMER_EVENT, 10, 2, &b, &none);

  /* absent: never registered, or differing in one part of the triple, or
   * in the key group, or in the kind */
  del(t, EDDY_TIMER_EVENT, 11, 1, &a, &none);
  del(t, EDDY_TIMER_EVENT, 10, 1, &b, &none);
  del(t, EDDY_TIMER_EVENT, 20, 1, &a, &w);
  del(t, EDDY_TIMER_EVENT, 10, 3, &a, &none);
  del(t, EDDY_TIMER_PROCESSING, 10, 1, &a, &none);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 4);

  /* the head, then one in the middle */
  del(t, EDDY_TIMER_EVENT, 10, 1, &a, &none);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 3);
  eddy_timer got;
  CHECK_EQ_INT(eddy_timers_peek(t, EDDY_TIMER_EVENT, &got), EDDY_OK);
  CHECK(same(&got, 10, 1, &a, &w));
  del(t, EDDY_TIMER_EVENT, 10, 2, &b, &none);
  del(t, EDDY_TIMER_EVENT, 10, 2, &b, &none);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 2);
  expect_pop(t, EDDY_TIMER_EVENT, 10, 1, &a, &w);
  expect_pop(t, EDDY_TIMER_EVENT, 20, 1, &a, &none);
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, INT64_MAX, &got), EDDY_ENOTFOUND);

  /* deleted, then registered again: new */
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 10, 1, &a, &none), 1);
  del(t, EDDY_TIMER_EVENT, 10, 1, &a, &none);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 10, 1, &a, &none), 1);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 1);
  eddy_timers_free(t);
}

static void test_pop_limit(void)
{
  eddy_timers *t = make(128, 0, 127);
  test_val k = test_int(1), k2 = test_str("a rather longer key, to see its bytes kept");
  eddy_timer got = {0, 0, {NULL, 0}, {NULL, 0}};
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, INT64_MAX, &got), EDDY_ENOTFOUND);
  reg(t, EDDY_TIMER_EVENT, 10, 4, &k2, &k);
  reg(t, EDDY_TIMER_EVENT, 20, 4, &k, &none);
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, 9, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, INT64_MIN, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 2);
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, 10, &got), EDDY_OK);
  CHECK(same(&got, 10, 4, &k2, &k));

  /* the popped bytes outlive changes to t until the next pop: an onTimer
   * callback registers and deletes while it reads its key */
  test_val filler = test_str("filler");
  for (int i = 0; i < 1000; i++)
    reg(t, EDDY_TIMER_EVENT, 1000 + i, i % 128, &filler, &none);
  for (int i = 0; i < 1000; i += 2)
    del(t, EDDY_TIMER_EVENT, 1000 + i, i % 128, &filler, &none);
  CHECK_EQ_INT(eddy_timers_drop_key_group(t, 5), EDDY_OK);
  CHECK(same(&got, 10, 4, &k2, &k));

  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, 19, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, 20, &got), EDDY_OK);
  CHECK(same(&got, 20, 4, &k, &none));
  CHECK(got.ns.len == 0);
  eddy_timers_free(t);
}

static void test_tie_order(void)
{
  /* Each row must fire before the next. Keys and namespaces compare as
   * encoded bytes: int 1 (0x01) < str "a" (0xa1 0x61) < str "b" < str "ab"
   * (0xa2 ...) < int 200 (0xcc 0xc8) < int -1 (0xff); no namespace sorts
   * first. */
  test_val i1 = test_int(1), i2 = test_int(2), i200 = test_int(200), im1 = test_int(-1);
  test_val a = test_str("a"), b = test_str("b"), ab = test_str("ab"), z = test_str("z");
  test_val n0 = test_int(0), nw = test_str("w");
  struct row {
    int64_t ts;
    int kg;
    const test_val *key, *ns;
  } rows[] = {
      {INT64_MIN, 5, &i200, &none},
      {INT64_MIN, 5, &i200, &n0},
      {INT64_MIN + 1, 0, &a, &none},
      {-1000000000000, 127, &a, &none},
      {-1, 2, &z, &none},
      {-1, 5, &i1, &none},
      {-1, 5, &i1, &n0},
      {-1, 5, &i1, &a},
      {-1, 5, &i1, &b},
      {-1, 5, &i1, &ab},
      {-1, 5, &i2, &none},
      {-1, 5, &a, &none},
      {-1, 5, &b, &none},
      {-1, 5, &ab, &none},
      {-1, 5, &i200, &none},
      {-1, 5, &im1, &none},
      {-1, 6, &i1, &none},
      {0, 0, &im1, &nw},
      {0, 127, &i1, &none},
      {1, 0, &i1, &none},
      {INT64_MAX - 1, 64, &z, &none},
      {INT64_MAX, 0, &z, &none},
      {INT64_MAX, 9, &i1, &none},
      {INT64_MAX, 9, &i1, &n0},
  };
  enum { N = sizeof rows / sizeof rows[0] };

  /* several registration orders, and both kinds */
  for (int round = 0; round < 20; round++) {
    int perm[N];
    for (int i = 0; i < N; i++)
      perm[i] = round == 0 ? N - 1 - i : i;
    for (int i = N - 1; round > 1 && i > 0; i--) {
      int j = (int)(rnd() % (uint32_t)(i + 1)), x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    eddy_timers *t = make(128, 0, 127);
    eddy_timer_kind kind = round % 2 ? EDDY_TIMER_PROCESSING : EDDY_TIMER_EVENT;
    for (int i = 0; i < N; i++) {
      const struct row *r = &rows[perm[i]];
      CHECK_EQ_INT(reg(t, kind, r->ts, r->kg, r->key, r->ns), 1);
    }
    for (int i = 0; i < N; i++) {
      eddy_timer peeked;
      CHECK_EQ_INT(eddy_timers_peek(t, kind, &peeked), EDDY_OK);
      CHECK(same(&peeked, rows[i].ts, rows[i].kg, rows[i].key, rows[i].ns));
      expect_pop(t, kind, rows[i].ts, rows[i].kg, rows[i].key, rows[i].ns);
    }
    CHECK_EQ_INT(eddy_timers_count(t, kind), 0);
    eddy_timers_free(t);
  }

  /* the spec's comparator agrees with the table (the model test uses it) */
  for (int i = 0; i + 1 < N; i++) {
    eddy_timer x = tmr(rows[i].ts, rows[i].kg, rows[i].key, rows[i].ns);
    eddy_timer y = tmr(rows[i + 1].ts, rows[i + 1].kg, rows[i + 1].key, rows[i + 1].ns);
    CHECK(spec_order(&x, &y) < 0);
  }
}

static void test_kinds(void)
{
  eddy_timers *t = make(128, 0, 127);
  test_val k = test_str("k");
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 5, 3, &k, &none), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_PROCESSING, 5, 3, &k, &none), 1);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_PROCESSING, 7, 3, &k, &none), 1);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 1);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 2);

  del(t, EDDY_TIMER_EVENT, 7, 3, &k, &none);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 2);
  eddy_timer got;
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, 100, &got), EDDY_OK);
  CHECK(same(&got, 5, 3, &k, &none));
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, 100, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 2);
  CHECK_EQ_INT(eddy_timers_peek(t, EDDY_TIMER_PROCESSING, &got), EDDY_OK);
  CHECK(same(&got, 5, 3, &k, &none));
  del(t, EDDY_TIMER_PROCESSING, 5, 3, &k, &none);
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 7, 3, &k, &none), 1);
  expect_pop(t, EDDY_TIMER_PROCESSING, 7, 3, &k, &none);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 1);
  eddy_timers_free(t);
}

static void test_peek(void)
{
  eddy_timers *t = make(256, 100, 199);
  eddy_timer got, popped;
  CHECK_EQ_INT(eddy_timers_peek(t, EDDY_TIMER_EVENT, &got), EDDY_ENOTFOUND);
  for (int i = 0; i < 500; i++) {
    test_val k = test_int((int64_t)(rnd() % 50));
    reg(t, EDDY_TIMER_EVENT, (int64_t)(rnd() % 40) - 20, 100 + (int)(rnd() % 100), &k, &none);
  }
  size_t n = eddy_timers_count(t, EDDY_TIMER_EVENT);
  for (size_t i = 0; i < n; i++) {
    CHECK_EQ_INT(eddy_timers_peek(t, EDDY_TIMER_EVENT, &got), EDDY_OK);
    CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), n - i);
    /* copy what peek saw: its slices die with the pop */
    test_val key = {{0}, got.key.len};
    memcpy(key.b, got.key.data, got.key.len);
    int64_t ts = got.timestamp;
    int kg = got.key_group;
    CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, INT64_MAX, &popped), EDDY_OK);
    CHECK(same(&popped, ts, kg, &key, &none));
  }
  CHECK_EQ_INT(eddy_timers_peek(t, EDDY_TIMER_EVENT, &got), EDDY_ENOTFOUND);
  eddy_timers_free(t);
}

/* An each() visitor that checks the order and keeps a copy of the last
 * timer it saw. */
typedef struct seen {
  int n, stop_at;
  eddy_timer prev;
  unsigned char prev_key[32], prev_ns[32];
  int ordered, kg_only; /* kg_only: -1 or the only key group allowed */
} seen;

static int collect(void *ud, const eddy_timer *tm)
{
  seen *s = ud;
  if (s->n > 0 && spec_order(&s->prev, tm) >= 0)
    s->ordered = 0;
  if (s->kg_only >= 0 && tm->key_group != s->kg_only)
    s->ordered = 0;
  s->prev = *tm;
  if (tm->key.len <= sizeof s->prev_key && tm->ns.len <= sizeof s->prev_ns) {
    memcpy(s->prev_key, tm->key.data, tm->key.len);
    if (tm->ns.len)
      memcpy(s->prev_ns, tm->ns.data, tm->ns.len);
    s->prev.key.data = s->prev_key;
    s->prev.ns.data = s->prev_ns;
  }
  s->n++;
  return s->n == s->stop_at ? 42 : 0;
}

static seen walk(eddy_timers *t, eddy_timer_kind kind, int kg, int *rc)
{
  seen s;
  memset(&s, 0, sizeof s);
  s.ordered = 1;
  s.kg_only = kg;
  *rc = eddy_timers_each(t, kind, kg, collect, &s);
  return s;
}

static void test_each(void)
{
  eddy_timers *t = make(128, 32, 63);
  int per_kg[32] = {0};
  for (int i = 0; i < 2000; i++) {
    test_val k = test_int((int64_t)(rnd() % 300)), ns = test_int((int64_t)(rnd() % 3));
    int kg = 32 + (int)(rnd() % 32);
    per_kg[kg - 32] += reg(t, EDDY_TIMER_EVENT, (int64_t)(rnd() % 100) - 50, kg, &k,
                           rnd() % 2 ? &ns : &none);
  }
  test_val p = test_int(3);
  reg(t, EDDY_TIMER_PROCESSING, 1, 40, &p, &none);
  int rc;
  seen s = walk(t, EDDY_TIMER_EVENT, -1, &rc);
  CHECK_EQ_INT(rc, EDDY_OK);
  CHECK_EQ_INT(s.n, eddy_timers_count(t, EDDY_TIMER_EVENT));
  CHECK(s.ordered);
  for (int kg = 32; kg < 64; kg++) {
    s = walk(t, EDDY_TIMER_EVENT, kg, &rc);
    CHECK_EQ_INT(rc, EDDY_OK);
    CHECK_EQ_INT(s.n, per_kg[kg - 32]);
    CHECK(s.ordered);
  }
  s = walk(t, EDDY_TIMER_PROCESSING, -1, &rc);
  CHECK_EQ_INT(s.n, 1);
  s = walk(t, EDDY_TIMER_PROCESSING, 41, &rc);
  CHECK_EQ_INT(rc, EDDY_OK);
  CHECK_EQ_INT(s.n, 0);

  /* the walk agrees with the pops that follow it */
  memset(&s, 0, sizeof s);
  s.stop_at = 7;
  s.kg_only = -1;
  CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, -1, collect, &s), 42);
  CHECK_EQ_INT(s.n, 7);
  eddy_timer got;
  for (int i = 0; i < 7; i++)
    CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, INT64_MAX, &got), EDDY_OK);
  CHECK(spec_order(&got, &s.prev) == 0);

  /* bad arguments */
  CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, 31, collect, &s), EDDY_EINVAL);
  CHECK(contains(eddy_timers_errmsg(t), "key group 31 is outside"));
  CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, 64, collect, &s), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, -2, collect, &s), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_each(t, (eddy_timer_kind)2, -1, collect, &s), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, -1, NULL, &s), EDDY_EINVAL);
  eddy_timers_free(t);
}

/* A visitor that does what it should not, or raises as a Lua binding's
 * visitor may (lua_error is a longjmp). */
enum { PEEK, REGISTER, REGISTER_AGAIN, DELETE, POP, DROP, NEST, RAISE };

typedef struct meddler {
  eddy_timers *t;
  int what, visits, inner_rc;
  seen inner;
} meddler;

static jmp_buf raised;

static int meddle(void *ud, const eddy_timer *tm)
{
  meddler *m = ud;
  eddy_timer got, x = *tm;
  m->visits++;
  switch (m->what) {
  case PEEK:
    CHECK_EQ_INT(eddy_timers_peek(m->t, EDDY_TIMER_EVENT, &got), EDDY_OK);
    break;
  case REGISTER:
    x.timestamp = INT64_MIN;
    CHECK_EQ_INT(eddy_timers_register(m->t, EDDY_TIMER_EVENT, &x, NULL), EDDY_OK);
    break;
  case REGISTER_AGAIN: /* already pending: no change */
    CHECK_EQ_INT(eddy_timers_register(m->t, EDDY_TIMER_EVENT, &x, NULL), EDDY_OK);
    break;
  case DELETE:
    CHECK_EQ_INT(eddy_timers_delete(m->t, EDDY_TIMER_EVENT, &x), EDDY_OK);
    break;
  case POP:
    CHECK_EQ_INT(eddy_timers_pop(m->t, EDDY_TIMER_EVENT, INT64_MAX, &got), EDDY_OK);
    break;
  case DROP:
    CHECK_EQ_INT(eddy_timers_drop_key_group(m->t, tm->key_group), EDDY_OK);
    break;
  case NEST:
    m->inner.ordered = 1;
    m->inner.kg_only = -1;
    m->inner_rc = eddy_timers_each(m->t, EDDY_TIMER_EVENT, -1, collect, &m->inner);
    break;
  case RAISE:
    longjmp(raised, 1);
  }
  return 0;
}

/* each() with a meddler; returns its status, or 1 if the visitor raised. */
static int each_meddled(meddler *m)
{
  if (setjmp(raised) != 0)
    return 1;
  return eddy_timers_each(m->t, EDDY_TIMER_EVENT, -1, meddle, m);
}

static void test_each_meddling(void)
{
  for (int what = PEEK; what <= RAISE; what++) {
    eddy_timers *t = make(128, 0, 127);
    for (int i = 0; i < 200; i++) {
      test_val k = test_int((int64_t)(rnd() % 1000));
      reg(t, EDDY_TIMER_EVENT, (int64_t)(rnd() % 50), (int)(rnd() % 128), &k, &none);
    }
    size_t n = eddy_timers_count(t, EDDY_TIMER_EVENT);
    meddler m;
    memset(&m, 0, sizeof m);
    m.t = t;
    m.what = what;
    int rc = each_meddled(&m);
    if (what == PEEK || what == REGISTER_AGAIN) {
      CHECK_EQ_INT(rc, EDDY_OK);
      CHECK_EQ_INT(m.visits, n);
    } else if (what == RAISE) {
      CHECK_EQ_INT(rc, 1);
      CHECK_EQ_INT(m.visits, 1);
    } else {
      /* the walk stops at once: its copy may name freed timers */
      CHECK_EQ_INT(rc, EDDY_EINVAL);
      CHECK_EQ_INT(m.visits, 1);
      CHECK(contains(eddy_timers_errmsg(t), "changed or walked again while each() visited"));
    }
    if (what == NEST) {
      CHECK_EQ_INT(m.inner_rc, EDDY_OK);
      CHECK_EQ_INT(m.inner.n, n);
      CHECK(m.inner.ordered);
    }
    /* t is whole: a walk sees every timer in order, and pops agree */
    int wrc;
    seen s = walk(t, EDDY_TIMER_EVENT, -1, &wrc);
    CHECK_EQ_INT(wrc, EDDY_OK);
    CHECK_EQ_INT(s.n, eddy_timers_count(t, EDDY_TIMER_EVENT));
    CHECK(s.ordered);
    if (what == REGISTER)
      CHECK_EQ_INT(s.n, n + 1);
    if (what == DELETE || what == POP)
      CHECK_EQ_INT(s.n, n - 1);
    if (what == RAISE) /* raised again, then freed with a walk pending */
      CHECK_EQ_INT(each_meddled(&m), 1);
    eddy_timers_free(t);
  }
}

static void test_drop_key_group(void)
{
  eddy_timers *t = make(128, 64, 127);
  test_val a = test_str("a"), b = test_str("b");
  for (int i = 0; i < 100; i++) {
    reg(t, EDDY_TIMER_EVENT, i, 64 + i % 4, &a, &none);
    reg(t, EDDY_TIMER_PROCESSING, i, 64 + i % 4, &b, &none);
  }
  CHECK_EQ_INT(eddy_timers_drop_key_group(t, 64), EDDY_OK);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 75);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 75);
  CHECK_EQ_INT(eddy_timers_drop_key_group(t, 64), EDDY_OK);
  CHECK_EQ_INT(eddy_timers_drop_key_group(t, 127), EDDY_OK);
  CHECK_EQ_INT(eddy_timers_drop_key_group(t, 63), EDDY_EINVAL);
  CHECK(contains(eddy_timers_errmsg(t), "key group 63 is outside"));
  CHECK_EQ_INT(eddy_timers_drop_key_group(t, 128), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 75);

  /* what is left fires in order, without key group 64 */
  int rc;
  seen s = walk(t, EDDY_TIMER_EVENT, 64, &rc);
  CHECK_EQ_INT(s.n, 0);
  for (int i = 0; i < 100; i++) {
    if (i % 4 == 0 || (i > 50 && i % 4 == 1))
      continue;
    expect_pop(t, EDDY_TIMER_EVENT, i, 64 + i % 4, &a, &none);
    expect_pop(t, EDDY_TIMER_PROCESSING, i, 64 + i % 4, &b, &none);
    if (i == 50) /* a group with timers of both kinds still pending */
      CHECK_EQ_INT(eddy_timers_drop_key_group(t, 65), EDDY_OK);
  }
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 0);

  /* a dropped group takes timers again */
  CHECK_EQ_INT(reg(t, EDDY_TIMER_EVENT, 0, 64, &a, &none), 1);
  expect_pop(t, EDDY_TIMER_EVENT, 0, 64, &a, &none);
  eddy_timers_free(t);
}

static void test_bad_args(void)
{
  eddy_timers *t = make(128, 10, 20);
  test_val k = test_int(1), w = test_int(2);
  eddy_timer tm = tmr(5, 9, &k, &none);
  int added = -1;
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_timers_errmsg(t),
               "cannot register a timer: key group 9 is outside this subtask's "
               "key-group range [10, 20]");
  CHECK_EQ_INT(added, 0);
  tm.key_group = 21;
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_EINVAL);
  CHECK(contains(eddy_timers_errmsg(t), "key group 21 is outside"));
  CHECK_EQ_INT(eddy_timers_delete(t, EDDY_TIMER_EVENT, &tm), EDDY_EINVAL);
  CHECK(contains(eddy_timers_errmsg(t), "cannot delete a timer: key group 21"));
  tm.key_group = -1;
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_EINVAL);

  tm = tmr(5, 10, &none, &none);
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_timers_errmsg(t), "cannot register a timer: it needs a non-empty key");
  CHECK_EQ_INT(eddy_timers_delete(t, EDDY_TIMER_PROCESSING, &tm), EDDY_EINVAL);
  CHECK(contains(eddy_timers_errmsg(t), "non-empty key"));
  tm.key.len = 1; /* a length without bytes */
  tm.key.data = NULL;
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_EINVAL);
  tm = tmr(5, 10, &k, &w);
  tm.ns.data = NULL;
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_EINVAL);
  CHECK(contains(eddy_timers_errmsg(t), "namespace length without bytes"));

  tm = tmr(5, 10, &k, &w);
  CHECK_EQ_INT(eddy_timers_register(t, (eddy_timer_kind)2, &tm, &added), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_timers_errmsg(t), "unknown timer kind 2");
  CHECK_EQ_INT(eddy_timers_register(t, (eddy_timer_kind)-1, &tm, &added), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_delete(t, (eddy_timer_kind)2, &tm), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, NULL, &added), EDDY_EINVAL);
  CHECK(contains(eddy_timers_errmsg(t), "no timer given"));
  CHECK_EQ_INT(eddy_timers_delete(t, EDDY_TIMER_EVENT, NULL), EDDY_EINVAL);
  eddy_timer got;
  CHECK_EQ_INT(eddy_timers_peek(t, (eddy_timer_kind)2, &got), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_peek(t, EDDY_TIMER_EVENT, NULL), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_pop(t, (eddy_timer_kind)2, 0, &got), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_pop(t, EDDY_TIMER_EVENT, 0, NULL), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_timers_count(t, (eddy_timer_kind)2), 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_PROCESSING), 0);

  /* nothing was left half done: the good timer goes in */
  CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_OK);
  CHECK_EQ_INT(added, 1);
  eddy_timers_free(t);
}

/* ---- the model: a sorted array of what must be pending ---- */

enum { MODEL_KEYS = 48, MODEL_NS = 4 };

typedef struct model {
  eddy_timer *v; /* slices point into the key and namespace tables */
  size_t n, cap;
} model;

/* Index of the first element not before x; *found if it equals x. */
static size_t model_find(const model *m, const eddy_timer *x, int *found)
{
  size_t lo = 0, hi = m->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (spec_order(&m->v[mid], x) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < m->n && spec_order(&m->v[lo], x) == 0;
  return lo;
}

static int model_add(model *m, const eddy_timer *x)
{
  int found;
  size_t i = model_find(m, x, &found);
  if (found)
    return 0;
  if (m->n == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 64;
    m->v = realloc(m->v, m->cap * sizeof *m->v);
    if (m->v == NULL)
      abort();
  }
  memmove(m->v + i + 1, m->v + i, (m->n - i) * sizeof *m->v);
  m->v[i] = *x;
  m->n++;
  return 1;
}

static void model_remove_at(model *m, size_t i)
{
  memmove(m->v + i, m->v + i + 1, (m->n - i - 1) * sizeof *m->v);
  m->n--;
}

typedef struct model_walk {
  const model *m;
  size_t i;
  int kg; /* -1: all */
  int bad;
} model_walk;

static int compare_with_model(void *ud, const eddy_timer *tm)
{
  model_walk *w = ud;
  while (w->i < w->m->n && w->kg >= 0 && w->m->v[w->i].key_group != w->kg)
    w->i++;
  if (w->i >= w->m->n || spec_order(&w->m->v[w->i], tm) != 0)
    w->bad++;
  w->i++;
  return 0;
}

static int64_t random_ts(void)
{
  switch (rnd() % 40) {
  case 0: return INT64_MIN;
  case 1: return INT64_MAX;
  case 2: return INT64_MIN + (int64_t)(rnd() % 3);
  case 3: return INT64_MAX - (int64_t)(rnd() % 3);
  default: return (int64_t)(rnd() % 101) - 50;
  }
}

static void test_model(void)
{
  /* a subtask that owns key groups [16, 47] of 64: only keys landing there */
  enum { MAXP = 64, FIRST = 16, LAST = 47 };
  test_val keys[MODEL_KEYS], nss[MODEL_NS];
  int kgs[MODEL_KEYS];
  int nkeys = 0;
  for (int i = 0; nkeys < MODEL_KEYS; i++) {
    char s[16];
    snprintf(s, sizeof s, "key%d", i);
    test_val k = i % 2 ? test_int(i / 2 - 10) : test_str(s);
    int kg;
    CHECK_EQ_INT(eddy_key_group(k.b, k.len, MAXP, &kg), EDDY_OK);
    if (kg < FIRST || kg > LAST)
      continue;
    kgs[nkeys] = kg;
    keys[nkeys++] = k;
  }
  nss[0] = none;
  nss[1] = test_int(0);
  nss[2] = test_str("window");
  nss[3] = test_int(-7);

  eddy_timers *t = make(MAXP, FIRST, LAST);
  model m[2] = {{NULL, 0, 0}, {NULL, 0, 0}};
  int bad = 0, pops = 0, misses = 0;
  for (int op = 0; op < 100000; op++) {
    eddy_timer_kind kind = rnd() % 4 == 0 ? EDDY_TIMER_PROCESSING : EDDY_TIMER_EVENT;
    model *mk = &m[kind];
    int ki = (int)(rnd() % MODEL_KEYS);
    eddy_timer x = tmr(random_ts(), kgs[ki], &keys[ki], &nss[rnd() % MODEL_NS]);
    uint32_t what = rnd() % 100;
    eddy_timer got;
    if (what < 45) {
      int added = -1;
      CHECK_EQ_INT(eddy_timers_register(t, kind, &x, &added), EDDY_OK);
      bad += added != model_add(mk, &x);
    } else if (what < 65) {
      /* half of the deletes hit a pending timer */
      if (mk->n > 0 && rnd() % 2)
        x = mk->v[rnd() % mk->n];
      int found;
      size_t i = model_find(mk, &x, &found);
      if (found)
        model_remove_at(mk, i);
      CHECK_EQ_INT(eddy_timers_delete(t, kind, &x), EDDY_OK);
    } else if (what < 90) {
      int64_t limit = random_ts();
      int rc = eddy_timers_pop(t, kind, limit, &got);
      if (mk->n > 0 && mk->v[0].timestamp <= limit) {
        bad += rc != EDDY_OK || spec_order(&got, &mk->v[0]) != 0;
        model_remove_at(mk, 0);
        pops++;
      } else {
        bad += rc != EDDY_ENOTFOUND;
        misses++;
      }
    } else if (what < 99) {
      int rc = eddy_timers_peek(t, kind, &got);
      bad += mk->n > 0 ? rc != EDDY_OK || spec_order(&got, &mk->v[0]) != 0
                       : rc != EDDY_ENOTFOUND;
    } else {
      int kg = rnd() % 2 ? -1 : kgs[ki];
      model_walk w = {mk, 0, kg, 0};
      CHECK_EQ_INT(eddy_timers_each(t, kind, kg, compare_with_model, &w), EDDY_OK);
      while (w.i < mk->n && kg >= 0 && mk->v[w.i].key_group != kg)
        w.i++;
      bad += w.bad + (w.i != mk->n);
    }
    bad += eddy_timers_count(t, EDDY_TIMER_EVENT) != m[EDDY_TIMER_EVENT].n;
    bad += eddy_timers_count(t, EDDY_TIMER_PROCESSING) != m[EDDY_TIMER_PROCESSING].n;
    if (op % 25000 == 24999) { /* now and then a whole key group goes */
      int kg = kgs[rnd() % MODEL_KEYS];
      CHECK_EQ_INT(eddy_timers_drop_key_group(t, kg), EDDY_OK);
      for (int k = 0; k < 2; k++)
        for (size_t i = m[k].n; i-- > 0;)
          if (m[k].v[i].key_group == kg)
            model_remove_at(&m[k], i);
    }
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(pops > 1000 && misses > 1000);
  CHECK(m[0].n > 100);
  /* drain: everything left comes out in the model's order */
  for (int k = 0; k < 2; k++) {
    eddy_timer got;
    for (size_t i = 0; i < m[k].n; i++)
      bad += eddy_timers_pop(t, (eddy_timer_kind)k, INT64_MAX, &got) != EDDY_OK ||
             spec_order(&got, &m[k].v[i]) != 0;
    CHECK_EQ_INT(eddy_timers_pop(t, (eddy_timer_kind)k, INT64_MAX, &got), EDDY_ENOTFOUND);
    free(m[k].v);
  }
  CHECK_EQ_INT(bad, 0);
  eddy_timers_free(t);
}

static double seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_million(void)
{
  enum { KEYS = 100000, TIMERS = 1000000, MAXP = 128 };
  /* keys encoded up front, back to back, so the clock sees only timers */
  eddy_buf kb = EDDY_BUF_INIT;
  size_t *off = malloc((KEYS + 1) * sizeof *off);
  int *kg = malloc(KEYS * sizeof *kg);
  int64_t *ts = malloc(TIMERS * sizeof *ts);
  CHECK(off != NULL && kg != NULL && ts != NULL);
  if (off == NULL || kg == NULL || ts == NULL)
    return;
  for (int i = 0; i < KEYS; i++) {
    off[i] = kb.len;
    char s[24];
    snprintf(s, sizeof s, "user-%d", i);
    CHECK_EQ_INT(i % 2 ? eddy_mp_write_int(&kb, i) : eddy_mp_write_str(&kb, s, strlen(s)),
                 EDDY_OK);
    CHECK_EQ_INT(eddy_key_group(kb.data + off[i], kb.len - off[i], MAXP, &kg[i]), EDDY_OK);
  }
  off[KEYS] = kb.len;
  /* timestamps from a narrow range, so that ties are common */
  for (int i = 0; i < TIMERS; i++)
    ts[i] = (int64_t)(rnd() % 200000) - 100000;

  eddy_timers *t = make(MAXP, 0, MAXP - 1);
  size_t added_total = 0;
  double t0 = seconds();
  for (int i = 0; i < TIMERS; i++) {
    int k = i % KEYS, added = 0;
    eddy_timer tm = {ts[i], kg[k], {kb.data + off[k], off[k + 1] - off[k]}, {NULL, 0}};
    if (eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added) != EDDY_OK)
      break;
    added_total += (size_t)added;
  }
  double t1 = seconds();
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), added_total);
  CHECK(added_total > TIMERS - 1000); /* a few (ts, key) pairs repeat */

  /* every timer again: all already pending */
  size_t again = 0;
  for (int i = 0; i < TIMERS; i += 7) {
    int k = i % KEYS, added = 1;
    eddy_timer tm = {ts[i], kg[k], {kb.data + off[k], off[k + 1] - off[k]}, {NULL, 0}};
    CHECK_EQ_INT(eddy_timers_register(t, EDDY_TIMER_EVENT, &tm, &added), EDDY_OK);
    again += (size_t)added;
  }
  CHECK_EQ_INT(again, 0);

  double t2 = seconds();
  size_t popped = 0, disorder = 0;
  eddy_timer got, prev = {0, 0, {NULL, 0}, {NULL, 0}};
  unsigned char prev_key[16];
  while (eddy_timers_pop(t, EDDY_TIMER_EVENT, INT64_MAX, &got) == EDDY_OK) {
    if (popped > 0 && spec_order(&prev, &got) >= 0)
      disorder++;
    prev = got;
    memcpy(prev_key, got.key.data, got.key.len < 16 ? got.key.len : 16);
    prev.key.data = prev_key;
    popped++;
  }
  double t3 = seconds();
  CHECK_EQ_INT(popped, added_total);
  CHECK_EQ_INT(disorder, 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 0);
  printf("timers: %zu registered in %.3f s, popped in order in %.3f s\n", added_total,
         t1 - t0, t3 - t2);
  eddy_timers_free(t);
  eddy_buf_free(&kb);
  free(off);
  free(kg);
  free(ts);
}

/* Fails each allocation of a call in turn until it succeeds; returns the
 * status of the successful call and counts the failures in *enomem. */
#define UNDER_FAULTS(call, enomem)                                           \
  do {                                                                       \
    for (unsigned long n_ = 1;; n_++) {                                      \
      countdown = n_;                                                        \
      int rc_ = (call);                                                      \
      countdown = 0;                                                         \
      if (rc_ != EDDY_ENOMEM) {                                              \
        CHECK_EQ_INT(rc_, EDDY_OK);                                          \
        break;                                                               \
      }                                                                      \
      (enomem)++;                                                            \
    }                                                                        \
  } while (0)

static void test_out_of_memory(void)
{
  int enomem = 0;
  eddy_timers *t = NULL;
  eddy_err err = {0, ""};
  UNDER_FAULTS(eddy_timers_new(256, 0, 255, &t, &err), enomem);
  CHECK(t != NULL);
  CHECK(FAULTS ? enomem == 5 : enomem == 0);

  /* registrations that fail leave exactly what was there */
  model m = {NULL, 0, 0};
  test_val keys[64];
  for (int i = 0; i < 64; i++)
    keys[i] = test_int(i * 1000);
  int failed_before = enomem, bad = 0;
  for (int i = 0; i < 3000; i++) {
    int ki = (int)(rnd() % 64);
    eddy_timer x = tmr((int64_t)(rnd() % 500), (int)(rnd() % 8), &keys[ki], &none);
    for (unsigned long n = 1;; n++) {
      int added = -1;
      countdown = n;
      int rc = eddy_timers_register(t, EDDY_TIMER_EVENT, &x, &added);
      countdown = 0;
      if (rc == EDDY_OK) {
        bad += added != model_add(&m, &x);
        break;
      }
      enomem++;
      bad += rc != EDDY_ENOMEM || added != 0 ||
             !contains(eddy_timers_errmsg(t), "out of memory registering a timer") ||
             eddy_timers_count(t, EDDY_TIMER_EVENT) != m.n;
    }
    if (i % 3 == 2) { /* deletes and pops never allocate */
      countdown = 1;
      eddy_timer got;
      int rc = eddy_timers_pop(t, EDDY_TIMER_EVENT, 250, &got);
      countdown = 0;
      if (m.n > 0 && m.v[0].timestamp <= 250) {
        bad += rc != EDDY_OK || spec_order(&got, &m.v[0]) != 0;
        model_remove_at(&m, 0);
      } else {
        bad += rc != EDDY_ENOTFOUND;
      }
      if (m.n > 0) {
        size_t victim = rnd() % m.n;
        countdown = 1;
        rc = eddy_timers_delete(t, EDDY_TIMER_EVENT, &m.v[victim]);
        countdown = 0;
        bad += rc != EDDY_OK;
        model_remove_at(&m, victim);
      }
    }
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(FAULTS ? enomem - failed_before > 2500 : enomem == failed_before);

  /* each() needs one allocation */
  model_walk w = {&m, 0, -1, 0};
  enomem = 0;
  UNDER_FAULTS(eddy_timers_each(t, EDDY_TIMER_EVENT, -1, compare_with_model, &w), enomem);
  CHECK_EQ_INT(w.bad, 0);
  CHECK_EQ_INT(w.i, m.n);
  CHECK(FAULTS ? enomem == 1 : enomem == 0);

  for (size_t i = 0; i < m.n; i++) {
    eddy_timer got;
    countdown = 1;
    int rc = eddy_timers_pop(t, EDDY_TIMER_EVENT, INT64_MAX, &got);
    countdown = 0;
    bad += rc != EDDY_OK || spec_order(&got, &m.v[i]) != 0;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(eddy_timers_count(t, EDDY_TIMER_EVENT), 0);
  free(m.v);
  eddy_timers_free(t);
}

TEST_MAIN("timers", TEST(test_new), TEST(test_dedup), TEST(test_delete),
          TEST(test_pop_limit), TEST(test_tie_order), TEST(test_kinds),
          TEST(test_peek), TEST(test_each), TEST(test_each_meddling),
          TEST(test_drop_key_group),
          TEST(test_bad_args), TEST(test_model), TEST(test_million),
          TEST(test_out_of_memory))
