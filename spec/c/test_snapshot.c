/*
 * The canonical keyed snapshot: round trips of every kind of state and
 * timer, restores into part of the key groups (how rescaling will use it),
 * a snapshot written on another thread while the state changes, and
 * streams that are cut, damaged or foreign, which must fail with a message
 * and nothing worse.
 *
 * test_snapshot_rocksdb.c defines SUITE_ROCKSDB and includes this file:
 * keyed states are then made on the RocksDB and the heap backend in turn,
 * so the same streams go from each backend into each (the canonical format
 * is backend-independent: a heap snapshot restores into RocksDB and back
 * with identical state), and the out-of-memory test runs without faults.
 */
#include "test.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "state/backend.h"
#include "state/keyed.h"
#include "state/snapshot.h"
#include "util/msgpack.h"

#define MAXP 128

/* ---- encoded values ---- */

typedef struct enc {
  unsigned char data[80];
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

static enc mp_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static enc mp_strf(const char *fmt, ...)
{
  char s[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(s, sizeof s, fmt, ap);
  va_end(ap);
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_str(&buf, s, (size_t)n), EDDY_OK);
  return from_buf(&buf);
}

static enc mp_window(int64_t start, int64_t end)
{
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_array(&buf, 2), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_int(&buf, start), EDDY_OK);
  CHECK_EQ_INT(eddy_mp_write_int(&buf, end), EDDY_OK);
  return from_buf(&buf);
}

static int contains(const char *haystack, const char *needle)
{
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint32_t rnd(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

/*
 * Fault injection: while fail_at is not 0, the fail_at-th allocation from
 * the moment it was set fails, so that a loop over fail_at = 1, 2, ...
 * takes every out-of-memory path of one call. The test replaces malloc,
 * calloc and realloc for this, except under ASan or TSan, which own them
 * (under valgrind, which checks these paths for leaks, pass
 * --soname-synonyms=somalloc=nouserintercepts).
 */
static unsigned long fail_at, allocs;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(SUITE_ROCKSDB)
#define FAULTS 0
#else
#define FAULTS 1
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);

static int should_fail(void)
{
  return fail_at != 0 && ++allocs == fail_at;
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

/* For the test's own buffers, which must not take the engine's faults. */
static void *malloc_unfailing(size_t n)
{
#if FAULTS
  return __libc_malloc(n);
#else
  return malloc(n);
#endif
}

static void faults_on(unsigned long n)
{
  allocs = 0;
  fail_at = n;
}

/* Turns faults off; whether the failure was reached. */
static int faults_off(void)
{
  int reached = fail_at != 0 && allocs >= fail_at;
  fail_at = 0;
  return reached;
}

/* ---- keyed states ---- */

#ifdef SUITE_ROCKSDB
#define SUITE_NAME "snapshot (rocksdb and heap)"
static int made;
/* try_restore's thousands of damaged streams test the reader, not the
 * backend, and a RocksDB costs milliseconds to open: those go to heap */
static int heap_only;

static int suite_backend_new(const eddy_backend_config *cfg, eddy_backend **out, eddy_err *err)
{
  return made++ % 2 == 0 && !heap_only ? eddy_rocksdb_backend_new(cfg, NULL, out, err)
                                       : eddy_heap_backend_new(cfg, out, err);
}
#else
static int heap_only;
#define SUITE_NAME "snapshot"
#define suite_backend_new eddy_heap_backend_new
#endif

static eddy_keyed *new_keyed(int maxp, int first, int last)
{
  eddy_backend_config cfg = {maxp, first, last};
  eddy_backend *b = NULL;
  eddy_keyed *k = NULL;
  eddy_err err = {0, ""};
  CHECK_EQ_INT(suite_backend_new(&cfg, &b, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_keyed_new(b, &k, &err), EDDY_OK);
  return k;
}

enum { S_VALUE, S_LIST, S_MAP, S_REDUCE, S_AGG, NSTATES };

static const char *const state_names[NSTATES] = {"total", "events", "fields", "sum", "avg"};
static const eddy_state_kind state_kinds[NSTATES] = {
  EDDY_STATE_VALUE, EDDY_STATE_LIST, EDDY_STATE_MAP, EDDY_STATE_REDUCING,
  EDDY_STATE_AGGREGATING};

static void register_all(eddy_keyed *k, uint32_t *ids)
{
  for (int s = 0; s < NSTATES; s++)
    CHECK_EQ_INT(eddy_backend_register(eddy_keyed_backend(k), state_names[s], state_kinds[s],
                                       &ids[s]),
                 EDDY_OK);
}

/* Key i: strings and integers of several encodings. */
static enc key_of(int i)
{
  return i % 3 == 0 ? mp_strf("user-%d", i) : mp_int((int64_t)i * 7919 - 50000);
}

/* Makes key i current; 0 if its key group is not k's. */
static int use_key(eddy_keyed *k, int i)
{
  enc key = key_of(i);
  return eddy_keyed_set_key(k, key.data, key.len, -1) == EDDY_OK;
}

/* Rows of every kind and timers of both kinds for key i, version ver. */
static void fill_key(eddy_keyed *k, const uint32_t *ids, int i, int ver)
{
  eddy_backend *b = eddy_keyed_backend(k);
  if (!use_key(k, i))
    return;
  enc v = mp_strf("value of version %d", ver * 1000 + i);
  eddy_row r = eddy_keyed_row(k, ids[S_VALUE]);
  CHECK_EQ_INT(eddy_backend_put(b, &r, v.data, v.len), EDDY_OK);
  r = eddy_keyed_row(k, ids[S_LIST]);
  for (int j = 0; j <= i % 4; j++) {
    enc e = mp_int(i * 10 + j + ver);
    CHECK_EQ_INT(eddy_backend_list_append(b, &r, e.data, e.len), EDDY_OK);
  }
  r = eddy_keyed_row(k, ids[S_MAP]);
  for (int j = 0; j <= i % 3; j++) {
    enc uk = j % 2 ? mp_strf("field-%d", j) : mp_int(j - 1), uv = mp_int(i + j * ver);
    CHECK_EQ_INT(eddy_backend_map_put(b, &r, uk.data, uk.len, uv.data, uv.len), EDDY_OK);
  }
  /* window state: namespaces */
  for (int w = 0; w <= i % 2; w++) {
    enc ns = mp_window(w * 100, w * 100 + 100), sum = mp_int(ver + i + w);
    CHECK_EQ_INT(eddy_keyed_set_namespace(k, ns.data, ns.len), EDDY_OK);
    r = eddy_keyed_row(k, ids[S_REDUCE]);
    CHECK_EQ_INT(eddy_backend_put(b, &r, sum.data, sum.len), EDDY_OK);
    CHECK_EQ_INT(eddy_keyed_register_timer(k, EDDY_TIMER_EVENT, w * 100 + 99), EDDY_OK);
  }
  CHECK_EQ_INT(eddy_keyed_set_namespace(k, NULL, 0), EDDY_OK);
  if (i % 5 == 0) {
    enc acc = mp_window(ver, i);
    r = eddy_keyed_row(k, ids[S_AGG]);
    CHECK_EQ_INT(eddy_backend_put(b, &r, acc.data, acc.len), EDDY_OK);
  }
  CHECK_EQ_INT(eddy_keyed_register_timer(k, EDDY_TIMER_PROCESSING, -1000 + i + ver), EDDY_OK);
  if (i % 4 == 0)
    CHECK_EQ_INT(eddy_keyed_register_timer(k, EDDY_TIMER_EVENT, INT64_MAX - i), EDDY_OK);
}

static eddy_keyed *make_source(int first, int last, int nkeys, int ver)
{
  eddy_keyed *k = new_keyed(MAXP, first, last);
  uint32_t ids[NSTATES];
  register_all(k, ids);
  for (int i = 0; i < nkeys; i++)
    fill_key(k, ids, i, ver);
  eddy_keyed_clear_key(k);
  return k;
}

/* ---- dumps: what keyed states hold, comparable bytewise ---- */

typedef struct dump {
  eddy_buf data;
  size_t (*recs)[2];
  size_t n;
  size_t cap;
  size_t start; /* of the record being built */
  int lo, hi;   /* key groups kept */
} dump;

static void put_u32(eddy_buf *b, size_t v)
{
  unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 8), (unsigned char)v};
  CHECK_EQ_INT(eddy_buf_append(b, x, 4), EDDY_OK);
}

static void put_bytes(eddy_buf *b, const void *p, size_t n)
{
  put_u32(b, n);
  CHECK_EQ_INT(eddy_buf_append(b, p, n), EDDY_OK);
}

static void rec_end(dump *d)
{
  if (d->n == d->cap) {
    d->cap = d->cap ? 2 * d->cap : 64;
    d->recs = realloc(d->recs, d->cap * sizeof *d->recs);
    CHECK(d->recs != NULL);
  }
  d->recs[d->n][0] = d->start;
  d->recs[d->n++][1] = d->data.len - d->start;
  d->start = d->data.len;
}

typedef struct timer_dump {
  dump *d;
  int kind;
} timer_dump;

static int dump_timer(void *ud, const eddy_timer *t)
{
  timer_dump *td = ud;
  dump *d = td->d;
  if (t->key_group < d->lo || t->key_group > d->hi)
    return 0;
  put_bytes(&d->data, "timer", 5);
  put_u32(&d->data, (size_t)td->kind);
  put_u32(&d->data, (size_t)((uint64_t)t->timestamp >> 32));
  put_u32(&d->data, (size_t)((uint64_t)t->timestamp & 0xffffffffu));
  put_u32(&d->data, (size_t)t->key_group);
  put_bytes(&d->data, t->key.data, t->key.len);
  put_bytes(&d->data, t->ns.data, t->ns.len);
  rec_end(d);
  return 0;
}

static void dump_one(dump *d, eddy_keyed *k)
{
  eddy_backend *b = eddy_keyed_backend(k);
  for (uint32_t s = 0; s < eddy_backend_state_count(b); s++) {
    eddy_backend_cursor *c;
    eddy_row r;
    eddy_slice v;
    const char *name = eddy_backend_state_name(b, s);
    const char *kind = eddy_state_kind_name(eddy_backend_state_kind(b, s));
    CHECK_EQ_INT(eddy_backend_cursor_open(b, s, &c), EDDY_OK);
    while (eddy_backend_cursor_next(c, &r, &v) == EDDY_OK) {
      if (r.key_group < d->lo || r.key_group > d->hi)
        continue;
      put_bytes(&d->data, "row", 3);
      put_bytes(&d->data, name, strlen(name));
      put_bytes(&d->data, kind, strlen(kind));
      put_u32(&d->data, (size_t)r.key_group);
      put_bytes(&d->data, r.key, r.key_len);
      put_bytes(&d->data, r.ns, r.ns_len);
      put_bytes(&d->data, v.data, v.len);
      rec_end(d);
    }
    eddy_backend_cursor_close(c);
  }
  for (int kind = 0; kind < 2; kind++) {
    timer_dump td = {d, kind};
    CHECK_EQ_INT(eddy_timers_each(eddy_keyed_timers(k), (eddy_timer_kind)kind, -1, dump_timer,
                                  &td),
                 EDDY_OK);
  }
}

static int cmp_recs(const void *x, const void *y, void *data)
{
  const size_t *a = x, *b = y;
  return eddy_mp_compare((const unsigned char *)data + a[0], a[1],
                         (const unsigned char *)data + b[0], b[1]);
}

/* The rows and timers of the key groups [lo, hi] of all of ks, as sorted
 * records in out (the caller frees it). */
static void dump_keyed(eddy_keyed *const *ks, int nk, int lo, int hi, eddy_buf *out)
{
  dump d = {EDDY_BUF_INIT, NULL, 0, 0, 0, lo, hi};
  for (int i = 0; i < nk; i++)
    dump_one(&d, ks[i]);
  if (d.n > 1)
    qsort_r(d.recs, d.n, sizeof *d.recs, cmp_recs, d.data.data);
  eddy_buf_init(out);
  for (size_t i = 0; i < d.n; i++)
    CHECK_EQ_INT(eddy_buf_append(out, d.data.data + d.recs[i][0], d.recs[i][1]), EDDY_OK);
  eddy_buf_free(&d.data);
  free(d.recs);
}

static void check_same(eddy_keyed *const *ks, int nk, int lo, int hi, const eddy_buf *want)
{
  eddy_buf got;
  dump_keyed(ks, nk, lo, hi, &got);
  CHECK(want->len > 0 || got.len == 0);
  CHECK_MEM(got.data, got.len, want->data, want->len);
  eddy_buf_free(&got);
}

/* ---- streams in memory ---- */

typedef struct mem {
  eddy_buf buf;
  size_t pos;
  size_t piece;  /* next lends at most this much at a time; 0: all */
  int fail_call; /* this call of next or write fails (1 = the first) */
  int calls;
  unsigned char *lent; /* what next lent last */
} mem;

static int mem_write(void *ud, const void *p, size_t n)
{
  mem *m = ud;
  if (++m->calls == m->fail_call)
    return EDDY_EIO;
  return eddy_buf_append(&m->buf, p, n);
}

/* Lends the stream piece bytes at a time, each piece in a copy of its
 * own that the next call frees, so that the address checker catches a
 * restore that reads a piece after it asked for the next one. */
static int mem_next(void *ud, const void **p, size_t *got)
{
  mem *m = ud;
  free(m->lent);
  m->lent = NULL;
  if (++m->calls == m->fail_call)
    return EDDY_EIO;
  size_t n = m->buf.len - m->pos;
  if (m->piece > 0 && n > m->piece)
    n = m->piece;
  if (n > 0) {
    m->lent = malloc_unfailing(n);
    CHECK(m->lent != NULL);
    memcpy(m->lent, m->buf.data + m->pos, n);
  }
  *p = m->lent;
  m->pos += n;
  *got = n;
  return 0;
}

/* The whole stream of a snapshot of k. */
static void write_snapshot(eddy_keyed *k, eddy_buf *out)
{
  eddy_keyed_snapshot *s = NULL;
  eddy_err err = {0, ""};
  mem m = {EDDY_BUF_INIT, 0, 0, 0, 0, NULL};
  CHECK_EQ_INT(eddy_keyed_snapshot_take(k, &s, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_keyed_snapshot_write(s, mem_write, &m, &err), EDDY_OK);
  eddy_keyed_snapshot_free(s);
  *out = m.buf;
}

/* Restores bytes into k, handed out piece bytes at a time. */
static int restore_bytes(eddy_keyed *k, const void *p, size_t n, size_t piece, eddy_err *err)
{
  mem m = {{(unsigned char *)p, n, n}, 0, piece, 0, 0, NULL};
  eddy_keyed_source src = {mem_next, &m, 0};
  int rc = eddy_keyed_restore(k, &src, err);
  free(m.lent);
  return rc;
}

/* ---- tests ---- */

static void test_round_trip(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 300, 1);
  eddy_buf want, bytes;
  dump_keyed(&src, 1, 0, MAXP - 1, &want);
  write_snapshot(src, &bytes);
  CHECK(bytes.len > 8 && memcmp(bytes.data, "EDDYKEYS\x01", 9) == 0);

  /* in one piece, and a byte at a time */
  static const size_t pieces[] = {0, 1, 7};
  for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
    eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
    eddy_err err = {0, ""};
    CHECK_EQ_INT(restore_bytes(dst, bytes.data, bytes.len, pieces[p], &err), EDDY_OK);
    check_same(&dst, 1, 0, MAXP - 1, &want);
    eddy_backend *b = eddy_keyed_backend(dst);
    CHECK_EQ_INT(eddy_backend_state_count(b), NSTATES);
    for (uint32_t s = 0; s < NSTATES; s++) {
      CHECK_EQ_STR(eddy_backend_state_name(b, s), state_names[s]);
      CHECK_EQ_INT(eddy_backend_state_kind(b, s), state_kinds[s]);
    }
    eddy_keyed_free(dst);
  }
  CHECK_EQ_INT(eddy_timers_count(eddy_keyed_timers(src), EDDY_TIMER_PROCESSING), 300);

  /* states that exist already (same kind) are reused, whatever their ids */
  eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
  uint32_t id;
  eddy_err err = {0, ""};
  CHECK_EQ_INT(eddy_backend_register(eddy_keyed_backend(dst), "unrelated", EDDY_STATE_LIST, &id),
               EDDY_OK);
  CHECK_EQ_INT(eddy_backend_register(eddy_keyed_backend(dst), "fields", EDDY_STATE_MAP, &id),
               EDDY_OK);
  CHECK_EQ_INT(restore_bytes(dst, bytes.data, bytes.len, 0, &err), EDDY_OK);
  check_same(&dst, 1, 0, MAXP - 1, &want);
  CHECK_EQ_INT(eddy_backend_state_count(eddy_keyed_backend(dst)), NSTATES + 1);
  eddy_keyed_free(dst);

  eddy_buf_free(&want);
  eddy_buf_free(&bytes);
  eddy_keyed_free(src);
}

static void test_empty(void)
{
  eddy_keyed *src = new_keyed(MAXP, 3, 9), *dst = new_keyed(MAXP, 0, MAXP - 1);
  eddy_buf bytes;
  eddy_err err = {0, ""};
  write_snapshot(src, &bytes);
  CHECK_EQ_INT(restore_bytes(dst, bytes.data, bytes.len, 0, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_state_count(eddy_keyed_backend(dst)), 0);
  eddy_buf_free(&bytes);
  eddy_keyed_free(src);
  eddy_keyed_free(dst);
}

/* A value and a list bigger than the pieces the writer and reader use,
 * restored through small reads. */
static void test_big_rows(void)
{
  enum { BIG = 700 * 1000 };
  eddy_keyed *src = new_keyed(MAXP, 0, MAXP - 1);
  uint32_t v, l;
  eddy_backend *b = eddy_keyed_backend(src);
  CHECK_EQ_INT(eddy_backend_register(b, "v", EDDY_STATE_VALUE, &v), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_register(b, "l", EDDY_STATE_LIST, &l), EDDY_OK);
  unsigned char *big = malloc(BIG);
  CHECK(big != NULL);
  for (int i = 0; i < 3000; i++) {
    CHECK(use_key(src, i));
    eddy_row r = eddy_keyed_row(src, i % 2 ? v : l);
    size_t n = i % 1000 == 8 ? BIG : 1 + (size_t)(i % 300);
    memset(big, 0x40 + i % 30, n); /* fixints */
    CHECK_EQ_INT(i % 2 ? eddy_backend_put(b, &r, big, n) : eddy_backend_list_set(b, &r, big, n),
                 EDDY_OK);
  }
  free(big);
  eddy_buf want, bytes;
  dump_keyed(&src, 1, 0, MAXP - 1, &want);
  write_snapshot(src, &bytes);
  CHECK(bytes.len > 3 * BIG);
  eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
  eddy_err err = {0, ""};
  CHECK_EQ_INT(restore_bytes(dst, bytes.data, bytes.len, 4000, &err), EDDY_OK);
  check_same(&dst, 1, 0, MAXP - 1, &want);
  eddy_keyed_free(dst);
  eddy_buf_free(&want);
  eddy_buf_free(&bytes);
  eddy_keyed_free(src);
}

/* Restores keep the key groups of their range: the two halves of a
 * rescaled operator together hold everything, each exactly its part. */
static void test_key_group_ranges(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 400, 2);
  eddy_buf all, bytes;
  dump_keyed(&src, 1, 0, MAXP - 1, &all);
  write_snapshot(src, &bytes);
  static const int ranges[][2] = {{0, 63}, {64, 127}, {10, 20}, {127, 127}, {0, 0}};
  eddy_keyed *half[2];
  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
    eddy_keyed *dst = new_keyed(MAXP, ranges[i][0], ranges[i][1]);
    eddy_err err = {0, ""};
    CHECK_EQ_INT(restore_bytes(dst, bytes.data, bytes.len, 0, &err), EDDY_OK);
    eddy_buf part;
    dump_keyed(&src, 1, ranges[i][0], ranges[i][1], &part);
    check_same(&dst, 1, 0, MAXP - 1, &part);
    eddy_buf_free(&part);
    if (i < 2)
      half[i] = dst;
    else
      eddy_keyed_free(dst);
  }
  check_same(half, 2, 0, MAXP - 1, &all);

  /* and a snapshot of a half restores into the whole range */
  eddy_buf hb;
  write_snapshot(half[1], &hb);
  eddy_keyed *whole = new_keyed(MAXP, 0, MAXP - 1);
  eddy_err err = {0, ""};
  CHECK_EQ_INT(restore_bytes(whole, hb.data, hb.len, 0, &err), EDDY_OK);
  eddy_buf part;
  dump_keyed(&src, 1, 64, 127, &part);
  check_same(&whole, 1, 0, MAXP - 1, &part);
  eddy_buf_free(&part);
  eddy_buf_free(&hb);
  eddy_keyed_free(whole);

  eddy_keyed_free(half[0]);
  eddy_keyed_free(half[1]);
  eddy_buf_free(&all);
  eddy_buf_free(&bytes);
  eddy_keyed_free(src);
}

typedef struct write_job {
  eddy_keyed_snapshot *snap;
  mem out;
  eddy_err err;
  int rc;
} write_job;

static void *write_thread(void *p)
{
  write_job *j = p;
  j->rc = eddy_keyed_snapshot_write(j->snap, mem_write, &j->out, &j->err);
  return NULL;
}

/* The asynchronous part on its own thread while the main thread changes
 * every row and timer: the stream holds the state at take time. */
static void test_write_while_changing(void)
{
  enum { N = 3000 };
  eddy_keyed *src = make_source(0, MAXP - 1, N, 3);
  eddy_buf want;
  dump_keyed(&src, 1, 0, MAXP - 1, &want);
  write_job job;
  memset(&job, 0, sizeof job);
  CHECK_EQ_INT(eddy_keyed_snapshot_take(src, &job.snap, &job.err), EDDY_OK);
  pthread_t th;
  CHECK_EQ_INT(pthread_create(&th, NULL, write_thread, &job), 0);

  uint32_t ids[NSTATES], late;
  register_all(src, ids);
  eddy_backend *b = eddy_keyed_backend(src);
  CHECK_EQ_INT(eddy_backend_register(b, "late", EDDY_STATE_VALUE, &late), EDDY_OK);
  for (int round = 0; round < 4; round++)
    for (int i = 0; i < 2 * N; i++) {
      if (!use_key(src, i))
        continue;
      int s = (int)(rnd() % NSTATES);
      eddy_row r = eddy_keyed_row(src, ids[s]);
      switch (rnd() % 4) {
      case 0:
        CHECK_EQ_INT(eddy_backend_clear(b, &r), EDDY_OK);
        break;
      case 1:
        CHECK_EQ_INT(eddy_keyed_delete_timer(src, EDDY_TIMER_PROCESSING, -1000 + i + 3),
                     EDDY_OK);
        break;
      case 2:
        r = eddy_keyed_row(src, late);
        CHECK_EQ_INT(eddy_backend_put(b, &r, "\x01", 1), EDDY_OK);
        break;
      default:
        fill_key(src, ids, i, 10 + round);
        break;
      }
    }
  int64_t ts;
  while (eddy_keyed_pop_timer(src, EDDY_TIMER_EVENT, 150, &ts) == EDDY_OK)
    ;
  CHECK_EQ_INT(pthread_join(th, NULL), 0);
  CHECK_EQ_INT(job.rc, EDDY_OK);
  eddy_keyed_snapshot_free(job.snap);

  eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
  eddy_err err = {0, ""};
  CHECK_EQ_INT(restore_bytes(dst, job.out.buf.data, job.out.buf.len, 0, &err), EDDY_OK);
  check_same(&dst, 1, 0, MAXP - 1, &want);
  CHECK_EQ_INT(eddy_backend_state_count(eddy_keyed_backend(dst)), NSTATES);
  eddy_keyed_free(dst);
  eddy_buf_free(&job.out.buf);
  eddy_buf_free(&want);
  eddy_keyed_free(src);
}

/* A restore of bytes that must fail: the code, a message, nothing left
 * over (the leak checker sees to that). */
static int try_restore(const void *p, size_t n, int maxp, char *msg, size_t cap)
{
  heap_only = 1;
  eddy_keyed *k = new_keyed(maxp, 0, maxp - 1);
  heap_only = 0;
  eddy_err err = {0, ""};
  int rc = restore_bytes(k, p, n, 0, &err);
  snprintf(msg, cap, "%s", err.msg);
  eddy_keyed_free(k);
  return rc;
}

static void test_damaged(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 4, 1);
  eddy_buf bytes;
  write_snapshot(src, &bytes);
  eddy_keyed_free(src);
  unsigned char *copy = malloc(bytes.len + 1);
  CHECK(copy != NULL);
  char msg[EDDY_ERR_MSG_MAX];
  CHECK(bytes.len > 200 && bytes.len < 2000);

  /* every truncation, the empty stream included */
  int bad = 0;
  for (size_t n = 0; n < bytes.len; n++) {
    int rc = try_restore(bytes.data, n, MAXP, msg, sizeof msg);
    bad += rc != EDDY_ECORRUPT || !contains(msg, "byte");
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(try_restore(bytes.data, 0, MAXP, msg, sizeof msg), EDDY_ECORRUPT);
  CHECK(contains(msg, "not an eddy keyed-state snapshot"));
  CHECK_EQ_INT(try_restore(bytes.data, bytes.len - 1, MAXP, msg, sizeof msg), EDDY_ECORRUPT);
  CHECK(contains(msg, "ends at byte"));

  /* every byte damaged, three ways: refused, never restored */
  static const unsigned char flips[] = {0x01, 0x80, 0xff};
  int accepted = 0, silent = 0;
  for (size_t i = 0; i < bytes.len; i++)
    for (size_t f = 0; f < sizeof flips; f++) {
      memcpy(copy, bytes.data, bytes.len);
      copy[i] ^= flips[f];
      int rc = try_restore(copy, bytes.len, MAXP, msg, sizeof msg);
      accepted += rc != EDDY_ECORRUPT && rc != EDDY_EINVAL;
      silent += msg[0] == '\0';
    }
  CHECK_EQ_INT(accepted, 0);
  CHECK_EQ_INT(silent, 0);

  /* foreign bytes, a newer version, another max parallelism, trailing
   * bytes */
  memcpy(copy, bytes.data, bytes.len);
  copy[3] = 'X';
  CHECK_EQ_INT(try_restore(copy, bytes.len, MAXP, msg, sizeof msg), EDDY_ECORRUPT);
  CHECK(contains(msg, "no magic at byte 0"));
  memcpy(copy, bytes.data, bytes.len);
  copy[8] = EDDY_KEYED_SNAPSHOT_VERSION + 1;
  CHECK_EQ_INT(try_restore(copy, bytes.len, MAXP, msg, sizeof msg), EDDY_EINVAL);
  CHECK(contains(msg, "format version 2 is newer than this eddy reads (1)"));
  CHECK_EQ_INT(try_restore(bytes.data, bytes.len, 256, msg, sizeof msg), EDDY_EINVAL);
  CHECK(contains(msg, "the snapshot has 128 key groups, this operator 256"));
  memcpy(copy, bytes.data, bytes.len);
  copy[bytes.len] = 0xc0;
  CHECK_EQ_INT(try_restore(copy, bytes.len + 1, MAXP, msg, sizeof msg), EDDY_ECORRUPT);
  char where[64];
  snprintf(where, sizeof where, "bytes after the end at byte %zu", bytes.len);
  CHECK(contains(msg, where));

  /* a damaged payload is found by the checksum */
  memcpy(copy, bytes.data, bytes.len);
  const unsigned char *val = memmem(copy, bytes.len, "value of version", 16);
  CHECK(val != NULL);
  if (val != NULL)
    copy[val - copy] = 'V';
  CHECK_EQ_INT(try_restore(copy, bytes.len, MAXP, msg, sizeof msg), EDDY_ECORRUPT);
  CHECK(contains(msg, "checksum mismatch"));

  free(copy);
  eddy_buf_free(&bytes);
}

/* A source that checks the bytes itself (a checkpoint's file): the
 * stream's checksum is skipped, but its structure is still checked, and
 * the source is read to its end, where it reports damage of its own. */
typedef struct checking {
  mem m;
  int fail_at_end; /* next fails when asked for more after the last byte */
} checking;

static int checking_next(void *ud, const void **p, size_t *n)
{
  checking *c = ud;
  if (c->fail_at_end && c->m.pos == c->m.buf.len) {
    free(c->m.lent);
    c->m.lent = NULL;
    return EDDY_ECORRUPT;
  }
  return mem_next(&c->m, p, n);
}

static int restore_checked(eddy_keyed *k, const eddy_buf *bytes, int fail_at_end,
                           eddy_err *err)
{
  checking c = {{{bytes->data, bytes->len, bytes->len}, 0, 1000, 0, 0, NULL}, fail_at_end};
  eddy_keyed_source src = {checking_next, &c, 1};
  int rc = eddy_keyed_restore(k, &src, err);
  free(c.m.lent);
  return rc;
}

static void test_checked_source(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 60, 1);
  eddy_buf want, bytes;
  dump_keyed(&src, 1, 0, MAXP - 1, &want);
  write_snapshot(src, &bytes);
  eddy_keyed_free(src);
  eddy_err err = {0, ""};

  eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
  CHECK_EQ_INT(restore_checked(dst, &bytes, 0, &err), EDDY_OK);
  check_same(&dst, 1, 0, MAXP - 1, &want);
  eddy_keyed_free(dst);

  /* the source's own check at the end is what fails the restore */
  dst = new_keyed(MAXP, 0, MAXP - 1);
  CHECK_EQ_INT(restore_checked(dst, &bytes, 1, &err), EDDY_ECORRUPT);
  CHECK(contains(err.msg, "reading at byte"));
  eddy_keyed_free(dst);

  /* a damaged payload: the stream's checksum is not what finds it here
   * (the source would), yet damage to the structure still is found */
  unsigned char *val = memmem(bytes.data, bytes.len, "value of version", 16);
  CHECK(val != NULL);
  if (val != NULL)
    *val = 'V';
  dst = new_keyed(MAXP, 0, MAXP - 1);
  CHECK_EQ_INT(restore_checked(dst, &bytes, 0, &err), EDDY_OK);
  eddy_keyed_free(dst);
  eddy_buf cut = {bytes.data, bytes.len - 3, bytes.len - 3};
  dst = new_keyed(MAXP, 0, MAXP - 1);
  CHECK_EQ_INT(restore_checked(dst, &cut, 0, &err), EDDY_ECORRUPT);
  CHECK(contains(err.msg, "the stream ends at byte"));
  eddy_keyed_free(dst);

  eddy_buf_free(&want);
  eddy_buf_free(&bytes);
}

/* Rows already in k for keys of the snapshot are replaced; others stay. */
static void test_restore_over_rows(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 30, 1);
  eddy_buf bytes;
  write_snapshot(src, &bytes);
  eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
  uint32_t ids[NSTATES];
  register_all(dst, ids);
  eddy_backend *b = eddy_keyed_backend(dst);
  enc old = mp_strf("before the restore"), other = mp_strf("not in the snapshot");
  CHECK(use_key(dst, 3));
  eddy_row r = eddy_keyed_row(dst, ids[S_VALUE]);
  CHECK_EQ_INT(eddy_backend_put(b, &r, old.data, old.len), EDDY_OK);
  CHECK(use_key(dst, 1000));
  r = eddy_keyed_row(dst, ids[S_VALUE]);
  CHECK_EQ_INT(eddy_backend_put(b, &r, other.data, other.len), EDDY_OK);
  eddy_keyed_clear_key(dst);
  eddy_err err = {0, ""};
  CHECK_EQ_INT(restore_bytes(dst, bytes.data, bytes.len, 0, &err), EDDY_OK);
  eddy_slice got, want;
  CHECK(use_key(dst, 3));
  r = eddy_keyed_row(dst, ids[S_VALUE]);
  CHECK_EQ_INT(eddy_backend_get(b, &r, &got), EDDY_OK);
  CHECK(use_key(src, 3));
  eddy_row rs = eddy_keyed_row(src, ids[S_VALUE]);
  CHECK_EQ_INT(eddy_backend_get(eddy_keyed_backend(src), &rs, &want), EDDY_OK);
  CHECK_MEM(got.data, got.len, want.data, want.len);
  CHECK(use_key(dst, 1000));
  r = eddy_keyed_row(dst, ids[S_VALUE]);
  CHECK_EQ_INT(eddy_backend_get(b, &r, &got), EDDY_OK);
  CHECK_MEM(got.data, got.len, other.data, other.len);
  eddy_keyed_free(dst);
  eddy_keyed_free(src);
  eddy_buf_free(&bytes);
}

/* A state restored into one registered with another kind. */
static void test_kind_conflict(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 10, 1);
  eddy_buf bytes;
  write_snapshot(src, &bytes);
  eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
  uint32_t id;
  eddy_err err = {0, ""};
  CHECK_EQ_INT(eddy_backend_register(eddy_keyed_backend(dst), "events", EDDY_STATE_VALUE, &id),
               EDDY_OK);
  CHECK_EQ_INT(restore_bytes(dst, bytes.data, bytes.len, 0, &err), EDDY_EINVAL);
  CHECK(contains(err.msg, "cannot restore state 'events' as a list state"));
  CHECK(contains(err.msg, "is a value state"));
  eddy_keyed_free(dst);
  eddy_buf_free(&bytes);
  eddy_keyed_free(src);
}

/* Failing reads and writes, and calls the API does not allow. */
static void test_io_errors_and_misuse(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 50, 1);
  eddy_keyed_snapshot *s = NULL;
  eddy_err err = {0, ""};
  mem m = {EDDY_BUF_INIT, 0, 0, 0, 0, NULL};

  CHECK_EQ_INT(eddy_keyed_snapshot_take(NULL, &s, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_keyed_snapshot_take(src, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_keyed_snapshot_take(src, &s, NULL), EDDY_OK);
  CHECK_EQ_INT(eddy_keyed_snapshot_write(s, NULL, &m, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_keyed_snapshot_write(NULL, mem_write, &m, &err), EDDY_EINVAL);
  m.fail_call = 1;
  CHECK_EQ_INT(eddy_keyed_snapshot_write(s, mem_write, &m, &err), EDDY_EIO);
  CHECK(contains(err.msg, "at byte 0 failed"));
  CHECK_EQ_INT(eddy_keyed_snapshot_write(s, mem_write, &m, &err), EDDY_EINVAL);
  CHECK(contains(err.msg, "already written"));
  eddy_keyed_snapshot_free(s);
  eddy_keyed_snapshot_free(NULL);
  eddy_buf_free(&m.buf);

  eddy_buf bytes;
  write_snapshot(src, &bytes);
  eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
  mem in = {bytes, 0, 100, 3, 0, NULL};
  eddy_keyed_source from = {mem_next, &in, 0}, nothing = {NULL, &in, 0};
  CHECK_EQ_INT(eddy_keyed_restore(dst, &from, &err), EDDY_EIO);
  CHECK(contains(err.msg, "reading at byte 200 failed"));
  free(in.lent);
  CHECK_EQ_INT(eddy_keyed_restore(NULL, &from, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_keyed_restore(dst, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_keyed_restore(dst, &nothing, &err), EDDY_EINVAL);
  eddy_keyed_free(dst);
  eddy_buf_free(&bytes);
  eddy_keyed_free(src);
}

/* Each allocation of take, write and restore fails once: the call fails
 * with a message, or (write) reports its sink's failure, and nothing leaks
 * or breaks; the first run that reaches no failure gives the right
 * result. */
static void test_out_of_memory(void)
{
  eddy_keyed *src = make_source(0, MAXP - 1, 40, 1);
  eddy_buf want, bytes = EDDY_BUF_INIT;
  dump_keyed(&src, 1, 0, MAXP - 1, &want);
  int failed = 0, reached;
  for (unsigned long n = 1;; n++) {
    eddy_keyed_snapshot *s = NULL;
    eddy_err err = {0, ""};
    mem m = {EDDY_BUF_INIT, 0, 0, 0, 0, NULL};
    faults_on(n);
    int rc = eddy_keyed_snapshot_take(src, &s, &err);
    if (rc == EDDY_OK)
      rc = eddy_keyed_snapshot_write(s, mem_write, &m, &err);
    reached = faults_off();
    eddy_keyed_snapshot_free(s);
    if (rc != EDDY_OK) {
      CHECK_EQ_INT(rc, EDDY_ENOMEM);
      CHECK(contains(err.msg, "out of memory") || contains(err.msg, "failed"));
      failed++;
      eddy_buf_free(&m.buf);
      continue;
    }
    if (!reached) {
      bytes = m.buf;
      break;
    }
    eddy_buf_free(&m.buf);
  }
  for (unsigned long n = 1;; n++) {
    eddy_keyed *dst = new_keyed(MAXP, 0, MAXP - 1);
    eddy_err err = {0, ""};
    faults_on(n);
    int rc = restore_bytes(dst, bytes.data, bytes.len, 0, &err);
    reached = faults_off();
    if (rc != EDDY_OK) {
      CHECK_EQ_INT(rc, EDDY_ENOMEM);
      CHECK(contains(err.msg, "out of memory"));
      failed++;
    } else if (!reached) {
      check_same(&dst, 1, 0, MAXP - 1, &want);
    }
    eddy_keyed_free(dst);
    if (rc == EDDY_OK && !reached)
      break;
  }
  CHECK(FAULTS ? failed > 100 : failed == 0);
  eddy_buf_free(&bytes);
  eddy_buf_free(&want);
  eddy_keyed_free(src);
}

TEST_MAIN(SUITE_NAME, TEST(test_round_trip), TEST(test_empty), TEST(test_big_rows),
          TEST(test_key_group_ranges), TEST(test_write_while_changing), TEST(test_damaged),
          TEST(test_kind_conflict), TEST(test_io_errors_and_misuse),
          TEST(test_out_of_memory), TEST(test_checked_source), TEST(test_restore_over_rows))
