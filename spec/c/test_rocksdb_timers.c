/*
 * Timers kept in RocksDB (rocksdb_timers.c) against the in-memory service
 * (timers_heap.c), which test_timers.c checks against a plain sorted array:
 * the same random operations on both must give the same answers. The RocksDB
 * one keeps only the first CACHE_MAX (32) timers of a key group in memory
 * and refills from the database, so the sequences hold hundreds of timers
 * in few key groups and aim registrations, deletions and pops at the 32nd
 * timer of a group. Then each() and its visitors; the timers in native
 * checkpoints (adopted whole or rescaled with the other key groups
 * deleted, copied from another file system, two halves merged or crossed,
 * into in-memory timers, row by row into a heap backend), which stay as
 * they were while the source goes on; and the names reserved for the timer
 * families.
 */
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/backend.h"
#include "state/rocksdb_timers.h"
#include "state/timers.h"
#include "util/buf.h"
#include "util/msgpack.h"

#define MAXP 128

/* ---- randomness: xorshift64, so that a seed replays a failure ---- */

static uint64_t rng;

static uint32_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}

static uint32_t below(uint32_t n) { return rnd() % n; }

/* ---- keys and namespaces: a small pool, so that timers collide ---- */

#define NKEYS 50
#define NNS 9
static test_val keys[NKEYS];
static test_val nss[NNS]; /* nss[0] is no namespace */

/* Integers of every MessagePack width and strings sharing prefixes, so that
 * the bytewise order differs from the numeric and the length orders. */
static void make_pools(void)
{
  static const int64_t ints[25] = {0,      1,        -1,         5,           127,
                                   128,    -32,      -33,        255,         256,
                                   65535,  65536,    4294967295, 4294967296,  INT64_MAX,
                                   INT64_MIN, -129,  1000,       42,          7,
                                   -7,     100000,   3,          2,           -2147483649LL};
  static const char *const strs[25] = {"",   "a",   "ab",  "abc", "b",   "ba",  "k",
                                       "key", "z",   "zz",  "k1",  "k2",  "k10", "A",
                                       "aa",  "aaa", "b0",  "\x7f", "\xc3\xa9", "x",
                                       "xy",  "xyz", "0",   "00",  "01"};
  for (int i = 0; i < 25; i++) {
    keys[i] = test_int(ints[i]);
    keys[25 + i] = test_str(strs[i]);
  }
  nss[0] = (test_val){{0}, 0};
  nss[1] = test_int(0);
  nss[2] = test_int(1);
  nss[3] = test_int(-1);
  nss[4] = test_str("");
  nss[5] = test_str("w");
  nss[6] = test_str("wx");
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_nil(&buf), EDDY_OK);
  nss[7] = test_val_of(&buf);
  CHECK_EQ_INT(eddy_mp_write_array(&buf, 2), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_int(&buf, 1), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_int(&buf, 2), EDDY_OK);
  nss[8] = test_val_of(&buf);
}

static eddy_timer timer_of(int64_t ts, int kg, int key, int ns)
{
  eddy_timer t = {ts, kg, {keys[key].b, keys[key].len},
                  {nss[ns].len ? nss[ns].b : NULL, nss[ns].len}};
  return t;
}

static int same_timer(const eddy_timer *a, const eddy_timer *b)
{
  return a->timestamp == b->timestamp && a->key_group == b->key_group &&
         a->key.len == b->key.len && memcmp(a->key.data, b->key.data, a->key.len) == 0 &&
         a->ns.len == b->ns.len && (a->ns.len == 0 || memcmp(a->ns.data, b->ns.data, a->ns.len) == 0);
}

/* ---- listings: what each() visits, as one comparable byte string ----
 *
 * A record is timestamp (8), key group (4), key length (4), namespace
 * length (4), key, namespace. */

typedef struct listing {
  eddy_buf buf;
  size_t n;
} listing;

static int list_visit(void *ud, const eddy_timer *tm)
{
  listing *l = ud;
  int32_t kg = tm->key_group;
  uint32_t kl = (uint32_t)tm->key.len, nl = (uint32_t)tm->ns.len;
  eddy_buf_append(&l->buf, &tm->timestamp, 8);
  eddy_buf_append(&l->buf, &kg, 4);
  eddy_buf_append(&l->buf, &kl, 4);
  eddy_buf_append(&l->buf, &nl, 4);
  eddy_buf_append(&l->buf, tm->key.data, kl);
  if (nl > 0)
    eddy_buf_append(&l->buf, tm->ns.data, nl);
  l->n++;
  return 0;
}

/* The record at *off, whose slices point into l; advances *off. */
static eddy_timer record_at(const listing *l, size_t *off)
{
  eddy_timer t;
  int32_t kg;
  uint32_t kl, nl;
  const unsigned char *p = l->buf.data + *off;
  memcpy(&t.timestamp, p, 8);
  memcpy(&kg, p + 8, 4);
  memcpy(&kl, p + 12, 4);
  memcpy(&nl, p + 16, 4);
  t.key_group = kg;
  t.key = (eddy_slice){p + 20, kl};
  t.ns = (eddy_slice){nl > 0 ? p + 20 + kl : NULL, nl};
  *off += 20 + kl + nl;
  return t;
}

static int list_timers(eddy_timers *t, eddy_timer_kind kind, int kg, listing *out)
{
  eddy_buf_init(&out->buf);
  out->n = 0;
  return eddy_timers_each(t, kind, kg, list_visit, out);
}

static int same_listing(const listing *a, const listing *b)
{
  return a->n == b->n && a->buf.len == b->buf.len &&
         (a->buf.len == 0 || memcmp(a->buf.data, b->buf.data, a->buf.len) == 0);
}

/* Where two listings first part, for the failure message. */
static void report_difference(const listing *a, const listing *b)
{
  size_t oa = 0, ob = 0;
  for (size_t i = 0; i < a->n || i < b->n; i++) {
    eddy_timer x = {0, -1, {NULL, 0}, {NULL, 0}}, y = x;
    if (i < a->n)
      x = record_at(a, &oa);
    if (i < b->n)
      y = record_at(b, &ob);
    if (i < a->n && i < b->n && same_timer(&x, &y))
      continue;
    fprintf(stderr, "  first difference at #%zu of %zu/%zu: in memory (%lld, kg %d, key %zu B, "
            "ns %zu B), RocksDB (%lld, kg %d, key %zu B, ns %zu B)\n",
            i, a->n, b->n, (long long)x.timestamp, x.key_group, x.key.len, x.ns.len,
            (long long)y.timestamp, y.key_group, y.key.len, y.ns.len);
    return;
  }
}

/* ---- the twin: one operation on both services, compared ---- */

typedef struct twin {
  eddy_timers *mem;
  eddy_timers *rdb;
  int first, last;
  const char *phase;
  uint64_t seed;
  int step;
  int callbacks_register; /* pops register a timer now and then, as callbacks do */
  /* recently registered timers, so that deletes often hit */
  eddy_timer recent[64];
  test_val recent_key[64], recent_ns[64];
  eddy_timer_kind recent_kind[64];
  int nrecent;
} twin;

static int shown; /* failure messages printed so far, to keep a flood short */

static int agree_at(twin *w, int ok, const char *what, int line)
{
  test_checks++;
  if (ok)
    return 1;
  test_failures++;
  if (shown++ < 30)
    fprintf(stderr, "%s:%d: in-memory and RocksDB timers differ: %s (range [%d, %d], %s, "
            "seed %llu, step %d)\n", __FILE__, line, what, w->first, w->last, w->phase,
            (unsigned long long)w->seed, w->step);
  return 0;
}

#define AGREE(w, ok, what) agree_at((w), (ok), (what), __LINE__)

static void remember(twin *w, eddy_timer_kind kind, const eddy_timer *tm)
{
  int i = w->nrecent < 64 ? w->nrecent++ : (int)below(64);
  w->recent_key[i].len = tm->key.len;
  memcpy(w->recent_key[i].b, tm->key.data, tm->key.len);
  w->recent_ns[i].len = tm->ns.len;
  if (tm->ns.len)
    memcpy(w->recent_ns[i].b, tm->ns.data, tm->ns.len);
  w->recent[i] = *tm;
  w->recent[i].key = (eddy_slice){w->recent_key[i].b, tm->key.len};
  w->recent[i].ns = (eddy_slice){tm->ns.len ? w->recent_ns[i].b : NULL, tm->ns.len};
  w->recent_kind[i] = kind;
}

static void twin_register(twin *w, eddy_timer_kind kind, const eddy_timer *tm)
{
  int am = -1, ar = -1;
  /* without `added`, RocksDB skips its read of a timer beyond the cache */
  int with_added = below(8) != 0;
  int rm = eddy_timers_register(w->mem, kind, tm, with_added ? &am : NULL);
  int rr = eddy_timers_register(w->rdb, kind, tm, with_added ? &ar : NULL);
  if (!AGREE(w, rm == rr && am == ar, "register"))
    fprintf(stderr, "  register: rc %d/%d added %d/%d (%s)\n", rm, rr, am, ar,
            eddy_timers_errmsg(w->rdb));
  if (rm == EDDY_OK && tm->key.len <= sizeof w->recent_key[0].b &&
      tm->ns.len <= sizeof w->recent_ns[0].b)
    remember(w, kind, tm);
}

static void twin_delete(twin *w, eddy_timer_kind kind, const eddy_timer *tm)
{
  int rm = eddy_timers_delete(w->mem, kind, tm);
  int rr = eddy_timers_delete(w->rdb, kind, tm);
  if (!AGREE(w, rm == rr, "delete"))
    fprintf(stderr, "  delete: rc %d/%d\n", rm, rr);
}

static void twin_peek(twin *w, eddy_timer_kind kind)
{
  eddy_timer a, b;
  int rm = eddy_timers_peek(w->mem, kind, &a);
  int rr = eddy_timers_peek(w->rdb, kind, &b);
  AGREE(w, rm == rr && (rm != EDDY_OK || same_timer(&a, &b)), "peek");
}

/* Pops one with limit on both; 1 if they popped. Now and then registers
 * and deletes between the pop and reading the popped timer, as a timer
 * callback would. */
static int twin_pop(twin *w, eddy_timer_kind kind, int64_t limit)
{
  eddy_timer a, b;
  int rm = eddy_timers_pop(w->mem, kind, limit, &a);
  int rr = eddy_timers_pop(w->rdb, kind, limit, &b);
  if (!AGREE(w, rm == rr && (rm != EDDY_OK || same_timer(&a, &b)), "pop")) {
    fprintf(stderr, "  pop(%lld): rc %d/%d ts %lld/%lld kg %d/%d\n", (long long)limit, rm, rr,
            rm == EDDY_OK ? (long long)a.timestamp : 0, rr == EDDY_OK ? (long long)b.timestamp : 0,
            rm == EDDY_OK ? a.key_group : -1, rr == EDDY_OK ? b.key_group : -1);
    return 0;
  }
  if (rm != EDDY_OK)
    return 0;
  if (w->callbacks_register && below(16) == 0) {
    eddy_timer again = a;
    again.timestamp = a.timestamp == INT64_MAX ? a.timestamp : a.timestamp + 1;
    int am, ar;
    CHECK_EQ_INT(eddy_timers_register(w->mem, kind, &again, &am), EDDY_OK);
    CHECK_EQ_INT(eddy_timers_register(w->rdb, kind, &again, &ar), EDDY_OK);
    CHECK_EQ_INT(am, ar);
    if (below(2)) {
      CHECK_EQ_INT(eddy_timers_delete(w->mem, kind, &again), EDDY_OK);
      CHECK_EQ_INT(eddy_timers_delete(w->rdb, kind, &again), EDDY_OK);
    }
    AGREE(w, same_timer(&a, &b), "popped timer read after a register");
  }
  return 1;
}

static size_t twin_pop_all(twin *w, eddy_timer_kind kind, int64_t limit)
{
  size_t n = 0;
  while (twin_pop(w, kind, limit))
    n++;
  return n;
}

static void twin_each(twin *w, eddy_timer_kind kind, int kg)
{
  listing a, b;
  int rm = list_timers(w->mem, kind, kg, &a);
  int rr = list_timers(w->rdb, kind, kg, &b);
  if (!AGREE(w, rm == rr && same_listing(&a, &b), kg == -1 ? "each (all)" : "each (group)")) {
    fprintf(stderr, "  each(kind %d, kg %d): rc %d/%d\n", (int)kind, kg, rm, rr);
    report_difference(&a, &b);
  }
  eddy_buf_free(&a.buf);
  eddy_buf_free(&b.buf);
}

static void twin_count(twin *w, eddy_timer_kind kind)
{
  size_t a = eddy_timers_count(w->mem, kind), b = eddy_timers_count(w->rdb, kind);
  if (!AGREE(w, a == b, "count"))
    fprintf(stderr, "  count(kind %d): %zu/%zu\n", (int)kind, a, b);
}

static void twin_drop(twin *w, int kg)
{
  int rm = eddy_timers_drop_key_group(w->mem, kg);
  int rr = eddy_timers_drop_key_group(w->rdb, kg);
  AGREE(w, rm == rr, "drop_key_group");
}

/* Both kinds, whole and group by group. */
/* The key groups the checkpoint tests fill beyond the cache. */
static const int deep[] = {5, 63, 64, 127};

/* Both kinds, whole and group by group (in a wide range, a sample of the
 * groups: the whole listing already has every timer). */
static void twin_compare_all(twin *w)
{
  for (int k = 0; k < 2; k++) {
    twin_count(w, (eddy_timer_kind)k);
    twin_each(w, (eddy_timer_kind)k, -1);
    twin_peek(w, (eddy_timer_kind)k);
    for (int kg = w->first; kg <= w->last; kg++) {
      int sampled = w->last - w->first < 40 || kg == w->first || kg == w->last || kg % 8 == 0;
      for (size_t d = 0; d < sizeof deep / sizeof deep[0]; d++)
        sampled |= kg == deep[d];
      if (sampled)
        twin_each(w, (eddy_timer_kind)k, kg);
    }
  }
}

/* ---- what the random sequences are made of ---- */

static const int64_t extremes[] = {INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX - 1, -1,
                                   -256, 256, -((int64_t)1 << 40), (int64_t)1 << 40, 0};

static int64_t pick_ts(int64_t span)
{
  if (below(100) < 3)
    return extremes[below(sizeof extremes / sizeof extremes[0])];
  return (int64_t)below((uint32_t)span) - 5;
}

static eddy_timer_kind pick_kind(void)
{
  return below(4) == 0 ? EDDY_TIMER_PROCESSING : EDDY_TIMER_EVENT;
}

/* A key group: mostly one of `hot` groups at the start of the range (all
 * of it when hot is 0). */
static int pick_kg(const twin *w, int hot)
{
  int span = w->last - w->first + 1;
  if (hot > 0 && hot < span && below(10) != 0)
    return w->first + (int)below((uint32_t)hot);
  return w->first + (int)below((uint32_t)span);
}

static eddy_timer random_timer(const twin *w, int hot, int64_t span)
{
  return timer_of(pick_ts(span), pick_kg(w, hot), (int)below(NKEYS),
                  below(3) == 0 ? 0 : (int)below(NNS));
}

static int64_t pick_limit(twin *w, eddy_timer_kind kind, int64_t span)
{
  switch (below(8)) {
  case 0:
    return INT64_MAX;
  case 1:
    return INT64_MIN;
  case 2: {
    /* exactly the head: pops its ties */
    eddy_timer head;
    if (eddy_timers_peek(w->mem, kind, &head) == EDDY_OK)
      return head.timestamp;
    return 0;
  }
  default:
    return (int64_t)below((uint32_t)span) - 10;
  }
}

/* Aims at the CACHE_MAX boundary of a key group: the timers around the
 * 32nd of the group are deleted, registered again, or get neighbours just
 * before or after them. */
static void twin_boundary(twin *w, eddy_timer_kind kind, int kg, int64_t span)
{
  listing l;
  CHECK_EQ_INT(list_timers(w->mem, kind, kg, &l), EDDY_OK);
  if (l.n < 24) {
    eddy_timer tm = random_timer(w, 0, span);
    tm.key_group = kg;
    twin_register(w, kind, &tm);
    eddy_buf_free(&l.buf);
    return;
  }
  size_t want = 26 + below(12), off = 0;
  if (want >= l.n)
    want = l.n - 1;
  eddy_timer at = record_at(&l, &off);
  for (size_t i = 0; i < want; i++)
    at = record_at(&l, &off);
  eddy_timer near;
  switch (below(5)) {
  case 0:
    twin_delete(w, kind, &at);
    break;
  case 1:
    twin_register(w, kind, &at); /* pending already: not added */
    break;
  case 2:
    near = timer_of(at.timestamp, kg, (int)below(NKEYS), (int)below(NNS));
    twin_register(w, kind, &near);
    break;
  case 3:
    near = at;
    near.timestamp = at.timestamp == INT64_MIN ? at.timestamp : at.timestamp - 1;
    twin_register(w, kind, &near);
    break;
  default:
    near = at;
    near.timestamp = at.timestamp == INT64_MAX ? at.timestamp : at.timestamp + 1;
    twin_register(w, kind, &near);
    break;
  }
  eddy_buf_free(&l.buf);
}

/* Bad arguments are refused alike. */
static void twin_bad_arguments(twin *w)
{
  eddy_timer tm = timer_of(1, w->first, 0, 0);
  switch (below(6)) {
  case 0:
    tm.key_group = w->first - 1;
    twin_register(w, EDDY_TIMER_EVENT, &tm);
    break;
  case 1:
    tm.key_group = w->last + 1;
    twin_delete(w, EDDY_TIMER_PROCESSING, &tm);
    break;
  case 2:
    tm.key.len = 0;
    twin_register(w, EDDY_TIMER_EVENT, &tm);
    break;
  case 3:
    twin_register(w, (eddy_timer_kind)2, &tm);
    break;
  case 4:
    twin_each(w, EDDY_TIMER_EVENT, w->last + 1);
    break;
  default:
    twin_drop(w, w->first - 1);
    break;
  }
}

/* One random operation; hot and span shape the timers it registers. */
static void twin_random_op(twin *w, int hot, int64_t span)
{
  eddy_timer_kind kind = pick_kind();
  uint32_t r = below(100);
  w->step++;
  if (r < 34) {
    eddy_timer tm = random_timer(w, hot, span);
    twin_register(w, kind, &tm);
  } else if (r < 44) {
    if (w->nrecent > 0) {
      int i = (int)below((uint32_t)w->nrecent);
      twin_delete(w, w->recent_kind[i], &w->recent[i]);
    }
  } else if (r < 50) {
    eddy_timer tm = random_timer(w, hot, span);
    twin_delete(w, kind, &tm);
  } else if (r < 58) {
    twin_peek(w, kind);
  } else if (r < 74) {
    twin_pop(w, kind, pick_limit(w, kind, span));
  } else if (r < 76) {
    twin_count(w, kind);
  } else if (r < 80) {
    twin_each(w, kind, below(3) == 0 ? -1 : pick_kg(w, hot));
  } else if (r < 81) {
    twin_drop(w, pick_kg(w, hot));
  } else if (r < 83) {
    twin_pop_all(w, kind, pick_limit(w, kind, span));
  } else if (r < 97) {
    twin_boundary(w, kind, pick_kg(w, hot), span);
  } else {
    twin_bad_arguments(w);
  }
}

/* ---- backends and folders ---- */

static char *copy_folder(const char *from, const char *to)
{
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", from, to);
  CHECK(system(cmd) == 0);
  return strdup(to);
}

static eddy_backend *rocks(const char *dir, int maxp, int first, int last, int timers_in_memory)
{
  eddy_backend_config cfg = {maxp, first, last};
  eddy_rocksdb_config rc;
  eddy_rocksdb_config_init(&rc);
  rc.dir = dir;
  rc.timers_in_memory = timers_in_memory;
  eddy_backend *b = NULL;
  eddy_err err;
  int r = eddy_rocksdb_backend_new(&cfg, &rc, &b, &err);
  CHECK_EQ_INT(r, EDDY_OK);
  if (r != EDDY_OK) {
    fprintf(stderr, "rocksdb: %s\n", err.msg);
    exit(1);
  }
  return b;
}

static eddy_backend *heap(int first, int last)
{
  eddy_backend_config cfg = {MAXP, first, last};
  eddy_backend *b = NULL;
  eddy_err err;
  CHECK_EQ_INT(eddy_heap_backend_new(&cfg, &b, &err), EDDY_OK);
  return b;
}

static eddy_timers *mem_timers(int maxp, int first, int last)
{
  eddy_timers *t = NULL;
  eddy_err err;
  CHECK_EQ_INT(eddy_timers_new(maxp, first, last, &t, &err), EDDY_OK);
  return t;
}

/* ---- 1. the random comparison ---- */

/* A twin of the RocksDB timers rdb over [first, last]: an empty
 * in-memory service beside them. */
static twin twin_new(int maxp, eddy_timers *rdb, int first, int last, const char *phase)
{
  twin w;
  memset(&w, 0, sizeof w);
  w.mem = mem_timers(maxp, first, last);
  w.rdb = rdb;
  w.first = first;
  w.last = last;
  w.phase = phase;
  return w;
}

/* One seed's sequence on b's timers, which it leaves empty. */
static void run_seed(eddy_backend *b, int maxp, int first, int last, uint64_t seed)
{
  twin w = twin_new(maxp, eddy_backend_timers(b), first, last, NULL);
  CHECK(w.rdb != NULL && eddy_timers_in_backend(w.rdb) && !eddy_timers_in_backend(w.mem));
  w.seed = seed;
  w.callbacks_register = 1;
  rng = seed;

  /* everything everywhere, timestamps close together */
  w.phase = "mixed";
  for (int i = 0; i < 1200; i++)
    twin_random_op(&w, 0, 40);
  twin_compare_all(&w);

  /* hundreds of timers in three key groups, then all fired at once */
  w.phase = "many";
  for (int i = 0; i < 600; i++) {
    w.step++;
    eddy_timer tm = random_timer(&w, 3, 300);
    twin_register(&w, pick_kind(), &tm);
    if (below(10) == 0 && w.nrecent > 0) {
      int j = (int)below((uint32_t)w.nrecent);
      twin_delete(&w, w.recent_kind[j], &w.recent[j]);
    }
  }
  twin_compare_all(&w);
  w.callbacks_register = 0; /* so that every pending timer fires once */
  for (int k = 0; k < 2; k++) {
    size_t n = eddy_timers_count(w.mem, (eddy_timer_kind)k);
    CHECK_EQ_INT(twin_pop_all(&w, (eddy_timer_kind)k, INT64_MAX), n);
  }
  w.callbacks_register = 1;
  twin_compare_all(&w);
  CHECK_EQ_INT(eddy_timers_count(w.rdb, EDDY_TIMER_EVENT), 0);

  /* a deep group, then registrations and pops around its 32nd timer */
  w.phase = "interleaved";
  for (int i = 0; i < 250; i++) {
    w.step++;
    eddy_timer tm = random_timer(&w, 2, 120);
    twin_register(&w, pick_kind(), &tm);
  }
  for (int i = 0; i < 1500; i++) {
    w.step++;
    eddy_timer_kind kind = pick_kind();
    switch (below(6)) {
    case 0:
    case 1:
      twin_pop(&w, kind, pick_limit(&w, kind, 120));
      break;
    case 2:
      twin_boundary(&w, kind, pick_kg(&w, 2), 120);
      break;
    default:
      twin_random_op(&w, 2, 120);
      break;
    }
    if (i % 250 == 0)
      twin_compare_all(&w);
  }
  twin_compare_all(&w);

  /* a group emptied by deletes in random order, so its cache drains and
   * refills from rows with tombstones between them */
  w.phase = "drain";
  int kg = first + (int)below((uint32_t)(last - first + 1));
  for (int i = 0; i < 150; i++) {
    eddy_timer tm = timer_of(pick_ts(200), kg, (int)below(NKEYS), (int)below(NNS));
    twin_register(&w, EDDY_TIMER_EVENT, &tm);
  }
  listing l;
  CHECK_EQ_INT(list_timers(w.mem, EDDY_TIMER_EVENT, kg, &l), EDDY_OK);
  CHECK(l.n > 100);
  eddy_timer *all = malloc((l.n + 1) * sizeof *all);
  size_t off = 0;
  for (size_t i = 0; i < l.n; i++)
    all[i] = record_at(&l, &off);
  /* in firing order (the cache drains from its front, as by pops) or
   * shuffled (holes anywhere) */
  for (size_t i = l.n; i > 1 && (seed & 1); i--) {
    size_t j = below((uint32_t)i);
    eddy_timer x = all[i - 1];
    all[i - 1] = all[j];
    all[j] = x;
  }
  for (size_t i = 0; i < l.n; i++) {
    w.step++;
    twin_delete(&w, EDDY_TIMER_EVENT, &all[i]);
    twin_peek(&w, EDDY_TIMER_EVENT);
    if (i % 16 == 0)
      twin_each(&w, EDDY_TIMER_EVENT, kg);
  }
  free(all);
  eddy_buf_free(&l.buf);
  twin_each(&w, EDDY_TIMER_EVENT, kg);
  listing empty;
  CHECK_EQ_INT(list_timers(w.rdb, EDDY_TIMER_EVENT, kg, &empty), EDDY_OK);
  CHECK_EQ_INT(empty.n, 0);
  eddy_buf_free(&empty.buf);

  /* dropped groups are gone for good, the others go on */
  w.phase = "drop";
  for (int i = 0; i < 300; i++)
    twin_random_op(&w, 0, 60);
  for (int g = first; g <= last; g += 2)
    twin_drop(&w, g);
  twin_compare_all(&w);
  for (int i = 0; i < 300; i++)
    twin_random_op(&w, 0, 60);
  twin_compare_all(&w);
  for (int k = 0; k < 2; k++)
    twin_pop_all(&w, (eddy_timer_kind)k, INT64_MAX);
  twin_compare_all(&w);
  CHECK_EQ_INT(eddy_timers_count(w.rdb, EDDY_TIMER_EVENT), 0);
  CHECK_EQ_INT(eddy_timers_count(w.rdb, EDDY_TIMER_PROCESSING), 0);

  eddy_timers_free(w.mem);
}

static void test_random_against_memory(void)
{
  char *dir = test_tmpdir();
  static const uint64_t seeds[] = {0x9e3779b97f4a7c15u, 0x2545f4914f6cdd1du, 12345};
  static const int ranges[3][3] = {
    {MAXP, 10, 40},
    {MAXP, 77, 77},
    {1024, 250, 262}, /* key groups on both sides of 256: both key-group bytes of a row */
  };
  for (int r = 0; r < 3; r++)
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
      /* a fresh database each: the last one's tombstones would slow every
       * scan without adding cases */
      eddy_backend *b = rocks(dir, ranges[r][0], ranges[r][1], ranges[r][2], 0);
      run_seed(b, ranges[r][0], ranges[r][1], ranges[r][2], seeds[s] + (uint64_t)r);
      eddy_backend_destroy(b);
    }
  test_rmdir(dir);
}

/* ---- 2. each() and its visitors ---- */

typedef enum change {
  CHANGE_NONE,
  CHANGE_REGISTER,
  CHANGE_DELETE,
  CHANGE_POP,
  CHANGE_DROP,
  CHANGE_WALK,
  CHANGE_PEEK,
  CHANGE_COUNT
} change;

typedef struct visitor {
  eddy_timers *t;
  change what;
  int at;        /* the visit (1-based) that acts */
  int ret;       /* what that visit returns */
  int visits;
  int inner_rc;  /* of the change it made */
  int64_t fresh_ts; /* of the timer it registers */
  test_val key, ns;
} visitor;

/* The timestamp of the timer the next visitors register: the same for
 * both services of a twin, new for every pair. */
static int64_t fresh_ts = 1000000;

static int inner_visit(void *ud, const eddy_timer *tm)
{
  (void)tm;
  (*(int *)ud)++;
  return 0;
}

static int acting_visit(void *ud, const eddy_timer *tm)
{
  visitor *v = ud;
  if (++v->visits != v->at)
    return 0;
  eddy_timer fresh = timer_of(v->fresh_ts, tm->key_group, 3, 2), head;
  int n = 0;
  switch (v->what) {
  case CHANGE_NONE:
    break;
  case CHANGE_REGISTER:
    v->inner_rc = eddy_timers_register(v->t, EDDY_TIMER_EVENT, &fresh, NULL);
    break;
  case CHANGE_DELETE: {
    /* delete what is visited: a copy, its slices die with the walk */
    eddy_timer copy = *tm;
    memcpy(v->key.b, tm->key.data, tm->key.len);
    copy.key.data = v->key.b;
    if (tm->ns.len) {
      memcpy(v->ns.b, tm->ns.data, tm->ns.len);
      copy.ns.data = v->ns.b;
    }
    v->inner_rc = eddy_timers_delete(v->t, EDDY_TIMER_EVENT, &copy);
    break;
  }
  case CHANGE_POP:
    v->inner_rc = eddy_timers_pop(v->t, EDDY_TIMER_EVENT, INT64_MAX, &head);
    break;
  case CHANGE_DROP:
    v->inner_rc = eddy_timers_drop_key_group(v->t, tm->key_group);
    break;
  case CHANGE_WALK:
    v->inner_rc = eddy_timers_each(v->t, EDDY_TIMER_EVENT, -1, inner_visit, &n);
    break;
  case CHANGE_PEEK:
    /* the visit's own timer is still readable after a peek */
    memcpy(v->key.b, tm->key.data, tm->key.len);
    v->inner_rc = eddy_timers_peek(v->t, EDDY_TIMER_EVENT, &head);
    if (memcmp(v->key.b, tm->key.data, tm->key.len) != 0)
      v->inner_rc = EDDY_ECORRUPT;
    break;
  case CHANGE_COUNT:
    v->inner_rc = eddy_timers_count(v->t, EDDY_TIMER_EVENT) > 0 ? EDDY_OK : EDDY_ENOTFOUND;
    break;
  }
  return v->ret;
}

/* Runs each() over kg (or -1) of t with a visitor that makes `what` at
 * visit `at` and returns ret there; the visits made and the result. */
static int walk_with(eddy_timers *t, int kg, change what, int at, int ret, int *visits,
                     int *inner_rc)
{
  visitor v;
  memset(&v, 0, sizeof v);
  v.fresh_ts = fresh_ts;
  v.t = t;
  v.what = what;
  v.at = at;
  v.ret = ret;
  int rc = eddy_timers_each(t, EDDY_TIMER_EVENT, kg, acting_visit, &v);
  *visits = v.visits;
  *inner_rc = v.inner_rc;
  return rc;
}

/* 40 event timers in each of three key groups (beyond the RocksDB cache),
 * and a few processing ones. */
static void fill_three(twin *w)
{
  for (int g = 0; g < 3; g++)
    for (int i = 0; i < 40; i++) {
      eddy_timer tm = timer_of(i % 13, w->first + g, i % NKEYS, i % NNS);
      twin_register(w, EDDY_TIMER_EVENT, &tm);
      if (i % 10 == 0)
        twin_register(w, EDDY_TIMER_PROCESSING, &tm);
    }
}

static void test_each_visitors(void)
{
  char *dir = test_tmpdir();
  eddy_backend *b = rocks(dir, MAXP, 20, 30, 0);
  twin w = twin_new(MAXP, eddy_backend_timers(b), 20, 30, "visitors");
  rng = 99;
  fill_three(&w);
  twin_compare_all(&w);

  eddy_timers *both[2] = {w.mem, w.rdb};
  for (int s = 0; s < 2; s++) {
    eddy_timers *t = both[s];
    int visits, inner;
    /* a non-zero return stops the walk there and comes back as is */
    CHECK_EQ_INT(walk_with(t, -1, CHANGE_NONE, 5, 7, &visits, &inner), 7);
    CHECK_EQ_INT(visits, 5);
    CHECK_EQ_INT(walk_with(t, 21, CHANGE_NONE, 40, -3, &visits, &inner), -3);
    CHECK_EQ_INT(visits, 40);
    CHECK_EQ_INT(walk_with(t, -1, CHANGE_NONE, 0, 0, &visits, &inner), EDDY_OK);
    CHECK_EQ_INT(visits, 120);
    CHECK_EQ_INT(walk_with(t, 25, CHANGE_NONE, 0, 0, &visits, &inner), EDDY_OK);
    CHECK_EQ_INT(visits, 0);
    /* bad walks */
    CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, 31, inner_visit, &visits), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, 19, inner_visit, &visits), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_timers_each(t, (eddy_timer_kind)7, -1, inner_visit, &visits),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_timers_each(t, EDDY_TIMER_EVENT, -1, NULL, NULL), EDDY_EINVAL);
    /* reading the service is no change */
    CHECK_EQ_INT(walk_with(t, -1, CHANGE_PEEK, 3, 0, &visits, &inner), EDDY_OK);
    CHECK_EQ_INT(visits, 120);
    CHECK_EQ_INT(inner, EDDY_OK);
  }
  twin_compare_all(&w);

  /* a change stops the walk after the visit that made it, with EINVAL,
   * and is made; unless that visit returned non-zero itself */
  static const change changes[] = {CHANGE_REGISTER, CHANGE_DELETE, CHANGE_POP, CHANGE_DROP,
                                   CHANGE_WALK};
  for (size_t c = 0; c < sizeof changes / sizeof changes[0]; c++) {
    for (int kg = -1; kg <= 20; kg += 21) {
      int rc[2], visits[2], inner[2];
      fresh_ts++;
      for (int s = 0; s < 2; s++)
        rc[s] = walk_with(both[s], kg, changes[c], 2 + (int)c, 0, &visits[s], &inner[s]);
      w.step = (int)c;
      if (!AGREE(&w, rc[0] == rc[1] && visits[0] == visits[1] && inner[0] == inner[1],
                 "a visitor's change"))
        fprintf(stderr, "  change %d kg %d: rc %d/%d visits %d/%d inner %d/%d\n",
                (int)changes[c], kg, rc[0], rc[1], visits[0], visits[1], inner[0], inner[1]);
      CHECK_EQ_INT(rc[1], EDDY_EINVAL);
      CHECK_EQ_INT(visits[1], 2 + (int)c);
      CHECK_EQ_INT(inner[1], EDDY_OK);
      CHECK(strstr(eddy_timers_errmsg(both[1]), "changed or walked again") != NULL);
      twin_compare_all(&w);
      if (changes[c] == CHANGE_DROP)
        fill_three(&w);
    }
    int visits[2], inner[2];
    fresh_ts++;
    for (int s = 0; s < 2; s++)
      CHECK_EQ_INT(walk_with(both[s], -1, changes[c], 1, 9, &visits[s], &inner[s]), 9);
    CHECK_EQ_INT(visits[0], 1);
    CHECK_EQ_INT(visits[1], 1);
    twin_compare_all(&w);
    if (changes[c] == CHANGE_DROP)
      fill_three(&w);
  }
  /* the walk after a stopped one is whole again */
  twin_compare_all(&w);

  eddy_timers_free(w.mem);
  eddy_backend_destroy(b);
  test_rmdir(dir);
}

/* timers.h forbids a visitor only to change the service or walk it again;
 * count() does neither, and the in-memory service lets a visitor count. */
static void test_each_allows_count(void)
{
  char *dir = test_tmpdir();
  eddy_backend *b = rocks(dir, MAXP, 20, 30, 0);
  twin w = twin_new(MAXP, eddy_backend_timers(b), 20, 30, "count in a visitor");
  fill_three(&w);
  int rc[2], visits[2], inner[2];
  rc[0] = walk_with(w.mem, 21, CHANGE_COUNT, 1, 0, &visits[0], &inner[0]);
  rc[1] = walk_with(w.rdb, 21, CHANGE_COUNT, 1, 0, &visits[1], &inner[1]);
  CHECK_EQ_INT(rc[0], EDDY_OK);
  CHECK_EQ_INT(visits[0], 40);
  CHECK_EQ_INT(rc[1], rc[0]);
  CHECK_EQ_INT(visits[1], visits[0]);
  eddy_timers_free(w.mem);
  eddy_backend_destroy(b);
  test_rmdir(dir);
}

/* ---- 3 and 4. timers in native checkpoints ---- */

/* Registers into `to` every timer of `from` in key groups [first, last]. */
static void copy_timers(eddy_timers *from, eddy_timers *to, int first, int last)
{
  for (int k = 0; k < 2; k++) {
    listing l;
    CHECK_EQ_INT(list_timers(from, (eddy_timer_kind)k, -1, &l), EDDY_OK);
    size_t off = 0;
    for (size_t i = 0; i < l.n; i++) {
      eddy_timer tm = record_at(&l, &off);
      if (tm.key_group >= first && tm.key_group <= last)
        CHECK_EQ_INT(eddy_timers_register(to, (eddy_timer_kind)k, &tm, NULL), EDDY_OK);
    }
    eddy_buf_free(&l.buf);
  }
}

/* A twin of `want` (in memory, copied) and `got`, the service under test,
 * over [first, last]. */
static twin twin_of(eddy_timers *want, eddy_timers *got, int first, int last, const char *phase)
{
  twin w = twin_new(MAXP, got, first, last, phase);
  copy_timers(want, w.mem, first, last);
  return w;
}

/* got holds exactly want's timers of [first, last]. */
static void expect_timers(eddy_timers *want, eddy_timers *got, int first, int last,
                          const char *phase)
{
  twin w = twin_of(want, got, first, last, phase);
  twin_compare_all(&w);
  eddy_timers_free(w.mem);
}

/* A copy of chk in b's working folder, where a restore may move it. */
static char *copy_into(eddy_backend *b, const char *chk, int n)
{
  char to[4200];
  snprintf(to, sizeof to, "%s/restore-%d", eddy_rocksdb_backend_path(b), n);
  return copy_folder(chk, to);
}

/* How many timers of both kinds t holds in [first, last]. */
static size_t timers_in(eddy_timers *t, int first, int last)
{
  size_t n = 0;
  for (int k = 0; k < 2; k++) {
    listing l;
    CHECK_EQ_INT(list_timers(t, (eddy_timer_kind)k, -1, &l), EDDY_OK);
    size_t off = 0;
    for (size_t i = 0; i < l.n; i++) {
      int kg = record_at(&l, &off).key_group;
      n += kg >= first && kg <= last;
    }
    eddy_buf_free(&l.buf);
  }
  return n;
}

static int has_timestamp(eddy_timers *t, int64_t ts)
{
  int found = 0;
  for (int k = 0; k < 2; k++) {
    listing l;
    CHECK_EQ_INT(list_timers(t, (eddy_timer_kind)k, -1, &l), EDDY_OK);
    size_t off = 0;
    for (size_t i = 0; i < l.n; i++)
      found |= record_at(&l, &off).timestamp == ts;
    eddy_buf_free(&l.buf);
  }
  return found;
}

#define AFTER_TS 4242424242LL /* only registered after the checkpoint */

static void test_native_checkpoints(void)
{
  char *dir = test_tmpdir(), *dir2 = test_tmpdir();
  eddy_err err;
  int adopted;
  rng = 7;

  /* the source: every key group, four of them deep, some fired and
   * deleted (tombstones) before the checkpoint */
  eddy_backend *src = rocks(dir, MAXP, 0, MAXP - 1, 0);
  twin w = twin_new(MAXP, eddy_backend_timers(src), 0, MAXP - 1, "checkpoint source");
  for (int kg = 0; kg < MAXP; kg++)
    for (int i = 0; i < 4; i++) {
      eddy_timer tm = timer_of(pick_ts(100), kg, (int)below(NKEYS), (int)below(NNS));
      twin_register(&w, i == 3 ? EDDY_TIMER_PROCESSING : EDDY_TIMER_EVENT, &tm);
    }
  for (int d = 0; d < 4; d++)
    for (int i = 0; i < 120; i++) {
      eddy_timer tm = timer_of(pick_ts(400), deep[d], (int)below(NKEYS), (int)below(NNS));
      twin_register(&w, i % 3 == 2 ? EDDY_TIMER_PROCESSING : EDDY_TIMER_EVENT, &tm);
    }
  twin_pop_all(&w, EDDY_TIMER_EVENT, 20);
  for (int i = 0; i < 40; i++) {
    int j = (int)below((uint32_t)w.nrecent);
    twin_delete(&w, w.recent_kind[j], &w.recent[j]);
  }
  twin_compare_all(&w);
  CHECK(eddy_timers_count(w.mem, EDDY_TIMER_EVENT) > 500);
  CHECK(eddy_timers_count(w.mem, EDDY_TIMER_PROCESSING) > 150);

  char *chk = NULL;
  CHECK_EQ_INT(eddy_rocksdb_checkpoint(src, 1, &chk, &err), EDDY_OK);
  eddy_timers *at_chk = mem_timers(MAXP, 0, MAXP - 1);
  copy_timers(w.mem, at_chk, 0, MAXP - 1);

  /* 4: the source goes on; none of it reaches the checkpoint folder */
  w.phase = "after the checkpoint";
  for (int i = 0; i < 300; i++) {
    eddy_timer tm = timer_of(i % 5 == 0 ? AFTER_TS : pick_ts(60), deep[i % 4],
                             (int)below(NKEYS), (int)below(NNS));
    twin_register(&w, pick_kind(), &tm);
  }
  twin_pop_all(&w, EDDY_TIMER_EVENT, 30);
  twin_drop(&w, 63);
  twin_compare_all(&w);
  CHECK(has_timestamp(w.rdb, AFTER_TS));

  /* (a) the same key groups: the folder becomes the database, and its
   * timers the new backend's, which fire on in order */
  eddy_backend *r = rocks(dir2, MAXP, 0, MAXP - 1, 0);
  char *moved = copy_into(r, chk, 0);
  eddy_rocksdb_native whole = {moved, 0, MAXP - 1};
  adopted = 9;
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &whole, 1, NULL, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0);
  free(moved);
  CHECK(eddy_backend_timers(r) != NULL);
  expect_timers(at_chk, eddy_backend_timers(r), 0, MAXP - 1, "adopted");
  CHECK(!has_timestamp(eddy_backend_timers(r), AFTER_TS));
  twin a = twin_of(at_chk, eddy_backend_timers(r), 0, MAXP - 1, "adopted, going on");
  a.seed = 7;
  a.callbacks_register = 1;
  for (int i = 0; i < 800; i++) {
    a.step++;
    switch (below(4)) {
    case 0:
      twin_pop(&a, EDDY_TIMER_EVENT, pick_limit(&a, EDDY_TIMER_EVENT, 200));
      break;
    case 1:
      twin_boundary(&a, pick_kind(), deep[below(4)], 200);
      break;
    default:
      twin_random_op(&a, 0, 200);
      break;
    }
  }
  twin_compare_all(&a);
  for (int k = 0; k < 2; k++)
    twin_pop_all(&a, (eddy_timer_kind)k, INT64_MAX);
  twin_compare_all(&a);
  eddy_timers_free(a.mem);
  eddy_backend_destroy(r);

  /* (b) rescaled: each half adopts a copy of the checkpoint and deletes
   * the other key groups' timers by range */
  char *halves[2];
  for (int half = 0; half < 2; half++) {
    int first = half ? MAXP / 2 : 0, last = half ? MAXP - 1 : MAXP / 2 - 1;
    r = rocks(dir2, MAXP, first, last, 0);
    moved = copy_into(r, chk, 0);
    eddy_rocksdb_native from = {moved, 0, MAXP - 1};
    CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &from, 1, NULL, &adopted, &err), EDDY_OK);
    CHECK_EQ_INT(adopted, 0);
    CHECK(access(moved, F_OK) != 0);
    free(moved);
    expect_timers(at_chk, eddy_backend_timers(r), first, last, "rescaled");
    CHECK_EQ_INT(eddy_timers_count(eddy_backend_timers(r), EDDY_TIMER_EVENT) +
                     eddy_timers_count(eddy_backend_timers(r), EDDY_TIMER_PROCESSING),
                 timers_in(at_chk, first, last));
    char *hchk = NULL;
    CHECK_EQ_INT(eddy_rocksdb_checkpoint(r, 10 + half, &hchk, &err), EDDY_OK);
    char to[4200];
    snprintf(to, sizeof to, "%s/half-%d", dir, half);
    halves[half] = copy_folder(hchk, to);
    free(hchk);
    /* the other key groups' timers were deleted, not just out of sight:
     * the half's own checkpoint does not carry them on */
    eddy_backend *hb_all = heap(0, MAXP - 1);
    eddy_timers *all_groups = mem_timers(MAXP, 0, MAXP - 1);
    CHECK_EQ_INT(eddy_rocksdb_native_rows(halves[half], hb_all, all_groups, &err), EDDY_OK);
    expect_timers(at_chk, all_groups, first, last, "a rescaled backend's checkpoint");
    eddy_timers_free(all_groups);
    eddy_backend_destroy(hb_all);
    twin h = twin_of(at_chk, eddy_backend_timers(r), first, last, "rescaled, firing");
    for (int k = 0; k < 2; k++)
      twin_pop_all(&h, (eddy_timer_kind)k, INT64_MAX);
    twin_compare_all(&h);
    eddy_timers_free(h.mem);
    eddy_backend_destroy(r);
  }

  /* a base that cannot be moved (another file system): every timer row of
   * the range is copied out, the folder stays */
  char shm_tmpl[] = "/dev/shm/eddy-rtimers-XXXXXX";
  struct stat shm_st, tmp_st;
  if (mkdtemp(shm_tmpl) != NULL) {
    if (stat(shm_tmpl, &shm_st) == 0 && stat(dir2, &tmp_st) == 0 &&
        shm_st.st_dev != tmp_st.st_dev) {
      char to[4200];
      snprintf(to, sizeof to, "%s/chk", shm_tmpl);
      char *far = copy_folder(chk, to);
      r = rocks(dir2, MAXP, 0, MAXP / 2 - 1, 0);
      eddy_rocksdb_native from = {far, 0, MAXP - 1};
      CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &from, 1, NULL, &adopted, &err), EDDY_OK);
      CHECK_EQ_INT(adopted, -1);
      CHECK(access(far, F_OK) == 0);
      expect_timers(at_chk, eddy_backend_timers(r), 0, MAXP / 2 - 1, "copied");
      eddy_backend_destroy(r);
      free(far);
    }
    test_rmdir(strdup(shm_tmpl));
  }

  /* the halves' checkpoints together again: the first adopted, the other
   * copied out of */
  r = rocks(dir2, MAXP, 0, MAXP - 1, 0);
  char *m0 = copy_into(r, halves[0], 0), *m1 = copy_into(r, halves[1], 1);
  eddy_rocksdb_native two[2] = {{m0, 0, MAXP / 2 - 1}, {m1, MAXP / 2, MAXP - 1}};
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, two, 2, NULL, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0);
  CHECK(access(m0, F_OK) != 0);
  CHECK(access(m1, F_OK) == 0);
  expect_timers(at_chk, eddy_backend_timers(r), 0, MAXP - 1, "merged");
  free(m0);
  free(m1);
  eddy_backend_destroy(r);

  /* and half of each: the base keeps its share and loses the rest, the
   * other gives its share */
  r = rocks(dir2, MAXP, MAXP / 4, 3 * MAXP / 4 - 1, 0);
  eddy_rocksdb_native crossed[2] = {{halves[1], MAXP / 2, MAXP - 1},
                                    {halves[0], 0, MAXP / 2 - 1}};
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, crossed, 2, NULL, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0);
  CHECK(access(halves[0], F_OK) == 0);
  expect_timers(at_chk, eddy_backend_timers(r), MAXP / 4, 3 * MAXP / 4 - 1, "crossed");
  twin x = twin_of(at_chk, eddy_backend_timers(r), MAXP / 4, 3 * MAXP / 4 - 1,
                   "crossed, going on");
  x.callbacks_register = 1;
  for (int i = 0; i < 400; i++)
    twin_random_op(&x, 0, 200);
  for (int k = 0; k < 2; k++)
    twin_pop_all(&x, (eddy_timer_kind)k, INT64_MAX);
  twin_compare_all(&x);
  eddy_timers_free(x.mem);
  eddy_backend_destroy(r);
  for (int half = 0; half < 2; half++)
    free(halves[half]);

  /* (c) timers kept in memory beside RocksDB: a restore must be given the
   * service, registers the timers there and drops their families, so a
   * later checkpoint holds no timer rows */
  r = rocks(dir2, MAXP, 0, MAXP - 1, 1);
  CHECK(eddy_backend_timers(r) == NULL);
  moved = copy_into(r, chk, 0);
  whole.dir = moved;
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &whole, 1, NULL, &adopted, &err), EDDY_EINVAL);
  CHECK(strstr(err.msg, "no timer service") != NULL);
  free(moved);
  eddy_backend_destroy(r);

  r = rocks(dir2, MAXP, 0, MAXP - 1, 1);
  eddy_timers *beside = mem_timers(MAXP, 0, MAXP - 1);
  moved = copy_into(r, chk, 0);
  whole.dir = moved;
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &whole, 1, beside, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0);
  free(moved);
  expect_timers(at_chk, beside, 0, MAXP - 1, "into memory");
  char *chk_c = NULL;
  CHECK_EQ_INT(eddy_rocksdb_checkpoint(r, 2, &chk_c, &err), EDDY_OK);
  eddy_backend *r2 = rocks(dir2, MAXP, 0, MAXP - 1, 0);
  moved = copy_into(r2, chk_c, 0);
  whole.dir = moved;
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r2, &whole, 1, NULL, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0);
  free(moved);
  CHECK_EQ_INT(eddy_timers_count(eddy_backend_timers(r2), EDDY_TIMER_EVENT), 0);
  CHECK_EQ_INT(eddy_timers_count(eddy_backend_timers(r2), EDDY_TIMER_PROCESSING), 0);
  eddy_timer none;
  CHECK_EQ_INT(eddy_timers_peek(eddy_backend_timers(r2), EDDY_TIMER_EVENT, &none),
               EDDY_ENOTFOUND);
  eddy_backend_destroy(r2);
  /* nor does reading it row by row find any */
  eddy_backend *hb = heap(0, MAXP - 1);
  eddy_timers *none_here = mem_timers(MAXP, 0, MAXP - 1);
  CHECK_EQ_INT(eddy_rocksdb_native_rows(chk_c, hb, none_here, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_timers_count(none_here, EDDY_TIMER_EVENT), 0);
  CHECK_EQ_INT(eddy_timers_count(none_here, EDDY_TIMER_PROCESSING), 0);
  eddy_timers_free(none_here);
  eddy_backend_destroy(hb);
  free(chk_c);
  eddy_timers_free(beside);
  eddy_backend_destroy(r);

  /* ... and rescaled into memory: only the range's timers */
  r = rocks(dir2, MAXP, 0, MAXP / 2 - 1, 1);
  beside = mem_timers(MAXP, 0, MAXP / 2 - 1);
  moved = copy_into(r, chk, 0);
  eddy_rocksdb_native from = {moved, 0, MAXP - 1};
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &from, 1, beside, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0);
  free(moved);
  expect_timers(at_chk, beside, 0, MAXP / 2 - 1, "rescaled into memory");
  eddy_timers_free(beside);
  eddy_backend_destroy(r);

  /* (d) row by row into a heap backend and in-memory timers of half the
   * key groups, and into a RocksDB backend's own timers */
  hb = heap(MAXP / 2, MAXP - 1);
  beside = mem_timers(MAXP, MAXP / 2, MAXP - 1);
  CHECK_EQ_INT(eddy_rocksdb_native_rows(chk, hb, beside, &err), EDDY_OK);
  expect_timers(at_chk, beside, MAXP / 2, MAXP - 1, "rows into a heap backend");
  CHECK(!has_timestamp(beside, AFTER_TS));
  eddy_timers_free(beside);
  eddy_backend_destroy(hb);
  r = rocks(dir2, MAXP, 0, MAXP / 2 - 1, 0);
  CHECK_EQ_INT(eddy_rocksdb_native_rows(chk, r, eddy_backend_timers(r), &err), EDDY_OK);
  expect_timers(at_chk, eddy_backend_timers(r), 0, MAXP / 2 - 1, "rows into RocksDB timers");
  eddy_backend_destroy(r);
  /* timers, but nowhere to put them */
  hb = heap(0, MAXP - 1);
  CHECK_EQ_INT(eddy_rocksdb_native_rows(chk, hb, NULL, &err), EDDY_EINVAL);
  eddy_backend_destroy(hb);

  /* the source itself is unharmed by all this */
  w.phase = "source at the end";
  twin_compare_all(&w);
  for (int k = 0; k < 2; k++)
    twin_pop_all(&w, (eddy_timer_kind)k, INT64_MAX);
  twin_compare_all(&w);

  free(chk);
  eddy_timers_free(at_chk);
  eddy_timers_free(w.mem);
  eddy_backend_destroy(src);
  test_rmdir(dir2);
  test_rmdir(dir);
}

/* ---- the timer families' names ---- */

static void test_reserved_names(void)
{
  char *dir = test_tmpdir();
  eddy_backend *bs[2] = {heap(0, MAXP - 1), rocks(dir, MAXP, 0, MAXP - 1, 0)};
  for (int i = 0; i < 2; i++) {
    eddy_backend *b = bs[i];
    uint32_t id = 77, before = eddy_backend_state_count(b);
    CHECK_EQ_INT(eddy_backend_register(b, EDDY_RDB_TIMER_CF_EVENT, EDDY_STATE_VALUE, &id),
                 EDDY_EINVAL);
    CHECK(strstr(eddy_backend_errmsg(b), "kept for timers") != NULL);
    CHECK_EQ_INT(eddy_backend_register(b, EDDY_RDB_TIMER_CF_PROCESSING, EDDY_STATE_MAP, &id),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_backend_register(b, "_timer_state/", EDDY_STATE_LIST, &id), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_backend_register(b, "_timer_state/mine", EDDY_STATE_VALUE, &id),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_backend_state_count(b), before);
    /* only the prefix with its slash is reserved */
    CHECK_EQ_INT(eddy_backend_register(b, "_timer_state", EDDY_STATE_VALUE, &id), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_register(b, "_timer_statex/a", EDDY_STATE_VALUE, &id), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_state_count(b), before + 2);
  }
  CHECK(eddy_backend_timers(bs[0]) == NULL);
  eddy_backend_destroy(bs[0]);
  eddy_backend_destroy(bs[1]);
  test_rmdir(dir);
}

TEST_MAIN("rocksdb_timers", TEST(make_pools), TEST(test_random_against_memory),
          TEST(test_each_visitors), TEST(test_each_allows_count), TEST(test_native_checkpoints),
          TEST(test_reserved_names))
