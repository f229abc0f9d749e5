/*
 * Timers in RocksDB (see rocksdb_timers.h for the row layout).
 *
 * Firing needs the earliest timer over all key groups after every pop, and
 * a seek into RocksDB for each would cost an iterator and, right after a
 * run of pops, a walk over their tombstones. So, as Flink's
 * RocksDBCachingPriorityQueueSet does, each key group keeps in memory a
 * sorted cache of its first few timers, and knows whether that is all of
 * them. The cache is refilled by one seek when it runs dry, starting at the
 * timer popped last, which steps over the tombstones before it. The order
 * of the non-empty groups by their first timers (timer_order.h) gives the
 * global head, like Flink's KeyGroupPartitionedPriorityQueue.
 *
 * Invariant, per key group: the cache holds the smallest timers of the
 * group in the database, in order; when `complete` it holds all of them;
 * an empty cache is always complete (so the group is empty). A timer
 * registered below the last cached one (or anywhere when complete) joins
 * the cache; one beyond it goes only to the database.
 */
#include "state/rocksdb_timers.h"

#include <stdlib.h>
#include <string.h>

#include "state/timer_order.h"
#include "state/timers_impl.h"
#include "util/msgpack.h"

#define CACHE_MAX 32 /* timers cached per key group and kind */
#define ROW_HEAD 10  /* key group and timestamp */

typedef struct crow {
  unsigned char *p;
  size_t n;
} crow;

typedef struct tgroup {
  crow *cache; /* CACHE_MAX + 1 slots once used */
  int ncache;
  int complete;
} tgroup;

typedef struct tqueue {
  rocksdb_column_family_handle_t *cf;
  tgroup *groups;
  eddy_timer_order order; /* the non-empty groups by first timer */
} tqueue;

typedef struct rdb_timers {
  eddy_timers base;
  rocksdb_t *db;
  rocksdb_writeoptions_t *wo;
  rocksdb_readoptions_t *ro;
  int ngroups;
  tqueue q[2];
  char *where;
  eddy_buf row;    /* a row key being built */
  eddy_buf popped; /* the last popped timer's row, which pop's caller reads */
  /* each() copies the rows it walks here, so a visitor that raises leaks
   * nothing (the next walk or the end frees them) */
  eddy_buf walk;
  size_t *walk_at;
  unsigned long version;
} rdb_timers;

/* ---- rows ---- */

static void put_kg(unsigned char *p, int kg)
{
  p[0] = (unsigned char)(kg >> 8 & 0xff);
  p[1] = (unsigned char)(kg & 0xff);
}

int eddy_rdb_timer_row(eddy_buf *out, const eddy_timer *timer)
{
  unsigned char head[ROW_HEAD];
  uint64_t u = (uint64_t)timer->timestamp ^ ((uint64_t)1 << 63);
  put_kg(head, timer->key_group);
  for (int i = 0; i < 8; i++)
    head[2 + i] = (unsigned char)(u >> (56 - 8 * i));
  eddy_buf_reset(out);
  int rc = eddy_buf_append(out, head, sizeof head);
  if (rc == EDDY_OK)
    rc = eddy_buf_append(out, timer->key.data, timer->key.len);
  if (rc == EDDY_OK && timer->ns.len > 0)
    rc = eddy_buf_append(out, timer->ns.data, timer->ns.len);
  return rc;
}

static int64_t row_timestamp(const unsigned char *row)
{
  uint64_t u = 0;
  for (int i = 0; i < 8; i++)
    u = u << 8 | row[2 + i];
  return (int64_t)(u ^ ((uint64_t)1 << 63));
}

int eddy_rdb_timer_parse(const void *row, size_t n, eddy_timer *out)
{
  const unsigned char *p = row;
  size_t klen;
  if (n <= ROW_HEAD || eddy_mp_value_len(p + ROW_HEAD, n - ROW_HEAD, &klen) != EDDY_OK)
    return EDDY_ECORRUPT;
  out->key_group = p[0] << 8 | p[1];
  out->timestamp = row_timestamp(p);
  out->key = (eddy_slice){p + ROW_HEAD, klen};
  size_t nslen = n - ROW_HEAD - klen;
  out->ns = (eddy_slice){nslen > 0 ? p + ROW_HEAD + klen : NULL, nslen};
  return EDDY_OK;
}

int eddy_rdb_timer_family(const char *name, eddy_timer_kind *kind)
{
  if (strcmp(name, EDDY_RDB_TIMER_CF_EVENT) == 0)
    *kind = EDDY_TIMER_EVENT;
  else if (strcmp(name, EDDY_RDB_TIMER_CF_PROCESSING) == 0)
    *kind = EDDY_TIMER_PROCESSING;
  else
    return 0;
  return 1;
}

static int row_cmp(const void *a, size_t an, const void *b, size_t bn)
{
  return eddy_mp_compare(a, an, b, bn);
}

/* ---- errors ---- */

static int rdb_error(rdb_timers *t, char *rerr, const char *what)
{
  eddy_seterr(&t->base.err, EDDY_EIO, "rocksdb timers (%s): %s failed: %s", t->where, what,
              rerr != NULL ? rerr : "unknown error");
  rocksdb_free(rerr);
  return EDDY_EIO;
}

static int no_memory(rdb_timers *t)
{
  return eddy_seterr(&t->base.err, EDDY_ENOMEM, "rocksdb timers: out of memory");
}

static int detached(rdb_timers *t)
{
  if (t->db != NULL)
    return EDDY_OK;
  return eddy_seterr(&t->base.err, EDDY_EINVAL, "rocksdb timers (%s): no open database",
                     t->where);
}

/* ---- the order of groups ---- */

/* After group gi's first timer changed (or it became empty or not). */
static void order_update(tqueue *q, int gi)
{
  const tgroup *g = &q->groups[gi];
  if (g->ncache == 0)
    eddy_timer_order_remove(&q->order, gi);
  else
    eddy_timer_order_set(&q->order, gi, row_timestamp(g->cache[0].p));
}

/* ---- group caches ---- */

static void cache_clear(tgroup *g)
{
  for (int i = 0; i < g->ncache; i++)
    free(g->cache[i].p);
  g->ncache = 0;
  g->complete = 1;
}

/* The position of row in g's cache, or where it would go; *found says. */
static int cache_find(const tgroup *g, const void *row, size_t n, int *found)
{
  int lo = 0, hi = g->ncache;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    int c = row_cmp(g->cache[mid].p, g->cache[mid].n, row, n);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = 0;
  return lo;
}

/* A copy of row, and room for it in g's cache: everything a cache_put can
 * need, so that nothing fails after the database has changed. NULL when
 * out of memory. */
static unsigned char *cache_copy(tgroup *g, const void *row, size_t n)
{
  if (g->cache == NULL && (g->cache = malloc((CACHE_MAX + 1) * sizeof *g->cache)) == NULL)
    return NULL;
  unsigned char *copy = malloc(n);
  if (copy != NULL)
    memcpy(copy, row, n);
  return copy;
}

/* Puts a cache_copy at pos; a cache over its size drops its last timer,
 * which is then only in the database. */
static void cache_put(tgroup *g, int pos, unsigned char *copy, size_t n)
{
  memmove(g->cache + pos + 1, g->cache + pos, (size_t)(g->ncache - pos) * sizeof *g->cache);
  g->cache[pos] = (crow){copy, n};
  if (++g->ncache > CACHE_MAX) {
    free(g->cache[--g->ncache].p);
    g->complete = 0;
  }
}

static void cache_remove(tgroup *g, int pos)
{
  free(g->cache[pos].p);
  g->ncache--;
  memmove(g->cache + pos, g->cache + pos + 1, (size_t)(g->ncache - pos) * sizeof *g->cache);
}

/* Reads the first timers of key group kg at from or after it (from NULL:
 * the group's start) into the empty cache of g, through it (an iterator
 * whose upper bound is at least the group's end; NULL: one of its own). */
static int cache_fill(rdb_timers *t, tqueue *q, int kg, const void *from, size_t from_n,
                      rocksdb_iterator_t *it)
{
  tgroup *g = &q->groups[kg - t->base.first];
  unsigned char start[2], end[2];
  put_kg(start, kg);
  put_kg(end, kg + 1);
  rocksdb_readoptions_t *ro = NULL;
  int own = it == NULL;
  if (own) {
    ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, sizeof end);
    it = rocksdb_create_iterator_cf(t->db, ro, q->cf);
  }
  if (from != NULL)
    rocksdb_iter_seek(it, from, from_n);
  else
    rocksdb_iter_seek(it, (const char *)start, sizeof start);
  int rc = EDDY_OK;
  g->complete = 0;
  while (rc == EDDY_OK && g->ncache < CACHE_MAX && rocksdb_iter_valid(it)) {
    size_t n;
    const char *k = rocksdb_iter_key(it, &n);
    if (n < 2 || memcmp(k, end, 2) >= 0)
      break; /* the next group: this one is all read */
    unsigned char *copy = cache_copy(g, k, n);
    if (copy != NULL)
      cache_put(g, g->ncache, copy, n);
    else
      rc = no_memory(t);
    rocksdb_iter_next(it);
  }
  if (rc == EDDY_OK) {
    size_t n = 0;
    const char *k = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &n) : NULL;
    g->complete = k == NULL || n < 2 || memcmp(k, end, 2) >= 0;
  }
  char *rerr = NULL;
  rocksdb_iter_get_error(it, &rerr);
  if (rerr != NULL && rc == EDDY_OK)
    rc = rdb_error(t, rerr, "reading timers");
  else
    rocksdb_free(rerr);
  if (own) {
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
  }
  if (rc != EDDY_OK) {
    /* an empty, incomplete cache would break the invariant: keep what is
     * known to be the group's start, or nothing and a failed call */
    if (g->ncache == 0)
      g->complete = 1;
    else
      g->complete = 0;
  }
  return rc;
}

/* ---- the operations ---- */

/* Builds timer's row in t->row and looks for it in its group's cache:
 * *pos is where it is or would go, *found whether it is there, *covered
 * whether the cache alone tells if it is pending (it is complete, or the
 * row sorts before its last timer). */
static int locate(rdb_timers *t, const eddy_timer *timer, tgroup *g, int *pos, int *found,
                  int *covered)
{
  int rc = detached(t);
  if (rc != EDDY_OK)
    return rc;
  if (eddy_rdb_timer_row(&t->row, timer) != EDDY_OK)
    return no_memory(t);
  *pos = cache_find(g, t->row.data, t->row.len, found);
  *covered = g->complete || *pos < g->ncache;
  return EDDY_OK;
}

static int rt_add(eddy_timers *bt, eddy_timer_kind kind, const eddy_timer *timer, int *added)
{
  rdb_timers *t = (rdb_timers *)bt;
  tqueue *q = &t->q[kind];
  int gi = timer->key_group - bt->first, pos, found, cached;
  tgroup *g = &q->groups[gi];
  int rc = locate(t, timer, g, &pos, &found, &cached);
  if (rc != EDDY_OK || found)
    return rc;
  char *rerr = NULL;
  if (!cached && added != NULL) {
    /* beyond the cache: only the database knows whether it is new */
    rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(t->db, t->ro, q->cf,
                                                       (const char *)t->row.data, t->row.len,
                                                       &rerr);
    if (rerr != NULL)
      return rdb_error(t, rerr, "reading a timer");
    *added = v == NULL;
    rocksdb_pinnableslice_destroy(v);
  }
  unsigned char *copy = NULL;
  if (cached && (copy = cache_copy(g, t->row.data, t->row.len)) == NULL)
    return no_memory(t);
  rocksdb_put_cf(t->db, t->wo, q->cf, (const char *)t->row.data, t->row.len, "", 0, &rerr);
  if (rerr != NULL) {
    free(copy);
    return rdb_error(t, rerr, "registering a timer");
  }
  t->version++;
  if (cached) {
    cache_put(g, pos, copy, t->row.len);
    if (added != NULL)
      *added = 1;
    if (pos == 0)
      order_update(q, gi);
  }
  return EDDY_OK;
}

/* Takes the timer at pos of group gi's cache out (its row is already
 * deleted in the database), refilling a drained cache from the database
 * starting at row. */
static int drop_cached(rdb_timers *t, tqueue *q, int gi, int pos, const void *row, size_t n)
{
  tgroup *g = &q->groups[gi];
  cache_remove(g, pos);
  int rc = EDDY_OK;
  if (g->ncache == 0 && !g->complete)
    rc = cache_fill(t, q, gi + t->base.first, row, n, NULL);
  if (pos == 0)
    order_update(q, gi);
  return rc;
}

static int rt_remove(eddy_timers *bt, eddy_timer_kind kind, const eddy_timer *timer)
{
  rdb_timers *t = (rdb_timers *)bt;
  tqueue *q = &t->q[kind];
  int gi = timer->key_group - bt->first, pos, found, covered;
  tgroup *g = &q->groups[gi];
  int rc = locate(t, timer, g, &pos, &found, &covered);
  if (rc != EDDY_OK || (!found && covered))
    return rc; /* a failure, or not pending */
  char *rerr = NULL;
  rocksdb_delete_cf(t->db, t->wo, q->cf, (const char *)t->row.data, t->row.len, &rerr);
  if (rerr != NULL)
    return rdb_error(t, rerr, "deleting a timer");
  t->version++;
  return found ? drop_cached(t, q, gi, pos, t->row.data, t->row.len) : EDDY_OK;
}

static int rt_head(eddy_timers *bt, eddy_timer_kind kind, eddy_timer *out)
{
  rdb_timers *t = (rdb_timers *)bt;
  tqueue *q = &t->q[kind];
  int top = eddy_timer_order_top(&q->order);
  if (top < 0)
    return eddy_seterr(&bt->err, EDDY_ENOTFOUND, "no pending timer");
  const crow *r = &q->groups[top].cache[0];
  return eddy_rdb_timer_parse(r->p, r->n, out);
}

static int rt_pop(eddy_timers *bt, eddy_timer_kind kind, int64_t limit, eddy_timer *out)
{
  rdb_timers *t = (rdb_timers *)bt;
  tqueue *q = &t->q[kind];
  eddy_timer head;
  if (rt_head(bt, kind, &head) != EDDY_OK || head.timestamp > limit)
    return eddy_seterr(&bt->err, EDDY_ENOTFOUND, "no timer due at %lld", (long long)limit);
  int gi = eddy_timer_order_top(&q->order);
  const crow *r = &q->groups[gi].cache[0];
  eddy_buf_reset(&t->popped);
  if (eddy_buf_append(&t->popped, r->p, r->n) != EDDY_OK)
    return no_memory(t);
  char *rerr = NULL;
  rocksdb_delete_cf(t->db, t->wo, q->cf, (const char *)r->p, r->n, &rerr);
  if (rerr != NULL)
    return rdb_error(t, rerr, "removing a fired timer");
  t->version++;
  int rc = drop_cached(t, q, gi, 0, t->popped.data, t->popped.len);
  if (rc != EDDY_OK)
    return rc;
  return eddy_rdb_timer_parse(t->popped.data, t->popped.len, out);
}

/* Copies the rows of the range [from, to] of key groups into t->walk, and
 * their offsets (n + 1 of them) into t->walk_at. */
static int copy_rows(rdb_timers *t, tqueue *q, int from, int to, size_t *count)
{
  unsigned char start[2], end[2];
  put_kg(start, from);
  put_kg(end, to + 1);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_fill_cache(ro, 0);
  rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, sizeof end);
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(t->db, ro, q->cf);
  size_t n = 0, cap = 0;
  int rc = EDDY_OK;
  eddy_buf_reset(&t->walk);
  for (rocksdb_iter_seek(it, (const char *)start, sizeof start);
       rc == EDDY_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl;
    const char *k = rocksdb_iter_key(it, &kl);
    if (n + 2 > cap) {
      cap = cap ? 2 * cap : 64;
      size_t *at = realloc(t->walk_at, cap * sizeof *at);
      if (at == NULL) {
        rc = no_memory(t);
        break;
      }
      t->walk_at = at;
    }
    t->walk_at[n++] = t->walk.len;
    if (eddy_buf_append(&t->walk, k, kl) != EDDY_OK)
      rc = no_memory(t);
  }
  char *rerr = NULL;
  rocksdb_iter_get_error(it, &rerr);
  if (rerr != NULL && rc == EDDY_OK)
    rc = rdb_error(t, rerr, "listing timers");
  else
    rocksdb_free(rerr);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  if (rc == EDDY_OK && n > 0)
    t->walk_at[n] = t->walk.len;
  *count = n;
  return rc;
}

/* Counting is no change: a visitor of each() may count, so this leaves the
 * walk's buffers alone. */
static size_t rt_count(eddy_timers *bt, eddy_timer_kind kind)
{
  rdb_timers *t = (rdb_timers *)bt;
  if (t->db == NULL)
    return 0;
  unsigned char start[2], end[2];
  put_kg(start, bt->first);
  put_kg(end, bt->last + 1);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_fill_cache(ro, 0);
  rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, sizeof end);
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(t->db, ro, t->q[kind].cf);
  size_t n = 0;
  for (rocksdb_iter_seek(it, (const char *)start, sizeof start); rocksdb_iter_valid(it);
       rocksdb_iter_next(it))
    n++;
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  return n;
}

/* Firing order across key groups: timestamp, then key group, then the
 * rest; the rows are whole key groups in order, so a stable tie on the
 * timestamp is settled by comparing the key-group bytes then the rest. */
static int by_firing(const void *x, const void *y, void *rows)
{
  const size_t *a = x, *b = y;
  const unsigned char *p = (const unsigned char *)rows + a[0];
  const unsigned char *q = (const unsigned char *)rows + b[0];
  int c = memcmp(p + 2, q + 2, 8);
  if (c == 0)
    c = memcmp(p, q, 2);
  if (c == 0)
    c = row_cmp(p + ROW_HEAD, a[1] - a[0] - ROW_HEAD, q + ROW_HEAD, b[1] - b[0] - ROW_HEAD);
  return c;
}

static int rt_each(eddy_timers *bt, eddy_timer_kind kind, int key_group,
                   int (*visit)(void *ud, const eddy_timer *timer), void *ud)
{
  rdb_timers *t = (rdb_timers *)bt;
  int rc = detached(t);
  if (rc != EDDY_OK)
    return rc;
  int from = key_group == -1 ? bt->first : key_group;
  int to = key_group == -1 ? bt->last : key_group;
  size_t n;
  t->version++; /* an outer walk's copy is about to go */
  if ((rc = copy_rows(t, &t->q[kind], from, to, &n)) != EDDY_OK || n == 0)
    return rc;
  /* sort pairs (start, end) of offsets: a row's end is the next start */
  size_t *pairs = malloc(2 * n * sizeof *pairs);
  if (pairs == NULL)
    return no_memory(t);
  for (size_t i = 0; i < n; i++) {
    pairs[2 * i] = t->walk_at[i];
    pairs[2 * i + 1] = t->walk_at[i + 1];
  }
  if (key_group == -1 && from < to) {
    qsort_r(pairs, n, 2 * sizeof *pairs, by_firing, t->walk.data);
  }
  /* the pairs replace the offsets, so that a raise leaks nothing */
  free(t->walk_at);
  t->walk_at = pairs;
  unsigned long version = t->version;
  for (size_t i = 0; i < n && rc == 0; i++) {
    eddy_timer tm;
    size_t at = t->walk_at[2 * i];
    rc = eddy_rdb_timer_parse(t->walk.data + at, t->walk_at[2 * i + 1] - at, &tm);
    if (rc != EDDY_OK) {
      rc = eddy_seterr(&bt->err, EDDY_ECORRUPT, "rocksdb timers (%s): a damaged timer row",
                       t->where);
      break;
    }
    rc = visit(ud, &tm);
    if (rc == 0 && t->version != version)
      rc = eddy_seterr(&bt->err, EDDY_EINVAL,
                       "timers were changed or walked again while each() visited them");
  }
  free(t->walk_at);
  t->walk_at = NULL;
  eddy_buf_reset(&t->walk);
  return rc;
}

static int rt_drop_key_group(eddy_timers *bt, int key_group)
{
  rdb_timers *t = (rdb_timers *)bt;
  int rc = detached(t);
  if (rc != EDDY_OK)
    return rc;
  unsigned char start[2], end[2];
  put_kg(start, key_group);
  put_kg(end, key_group + 1);
  t->version++;
  for (int k = 0; k < 2; k++) {
    tqueue *q = &t->q[k];
    char *rerr = NULL;
    rocksdb_delete_range_cf(t->db, t->wo, q->cf, (const char *)start, sizeof start,
                            (const char *)end, sizeof end, &rerr);
    if (rerr != NULL)
      return rdb_error(t, rerr, "dropping a key group's timers");
    cache_clear(&q->groups[key_group - bt->first]);
    order_update(q, key_group - bt->first);
  }
  return EDDY_OK;
}

static void forget(rdb_timers *t)
{
  for (int k = 0; k < 2; k++) {
    tqueue *q = &t->q[k];
    for (int i = 0; q->groups != NULL && i < t->ngroups; i++) {
      cache_clear(&q->groups[i]);
      if (q->order.pos != NULL)
        eddy_timer_order_remove(&q->order, i);
    }
    q->cf = NULL;
  }
  t->db = NULL;
  t->wo = NULL;
}

static void rt_destroy(eddy_timers *bt)
{
  rdb_timers *t = (rdb_timers *)bt;
  forget(t);
  for (int k = 0; k < 2; k++) {
    for (int i = 0; t->q[k].groups != NULL && i < t->ngroups; i++)
      free(t->q[k].groups[i].cache);
    free(t->q[k].groups);
    eddy_timer_order_free(&t->q[k].order);
  }
  if (t->ro != NULL)
    rocksdb_readoptions_destroy(t->ro);
  free(t->where);
  free(t->walk_at);
  eddy_buf_free(&t->row);
  eddy_buf_free(&t->popped);
  eddy_buf_free(&t->walk);
  free(t);
}

static const eddy_timers_ops rdb_timer_ops = {
  rt_add, rt_remove, rt_head, rt_pop, rt_count, rt_each, rt_drop_key_group, rt_destroy,
};

int eddy_rdb_timers_new(int max_parallelism, int first_key_group, int last_key_group,
                        const char *where, eddy_timers **out, eddy_err *err)
{
  *out = NULL;
  rdb_timers *t = calloc(1, sizeof *t);
  if (t == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb timers: out of memory");
  int rc = eddy_timers_base_init(&t->base, &rdb_timer_ops, max_parallelism, first_key_group,
                                 last_key_group, err);
  if (rc != EDDY_OK) {
    free(t);
    return rc;
  }
  t->base.in_backend = 1;
  t->ngroups = last_key_group - first_key_group + 1;
  t->where = strdup(where != NULL ? where : "?");
  t->ro = rocksdb_readoptions_create();
  for (int k = 0; k < 2 && t->where != NULL; k++) {
    tqueue *q = &t->q[k];
    q->groups = calloc((size_t)t->ngroups, sizeof *q->groups);
    if (q->groups == NULL || eddy_timer_order_init(&q->order, t->ngroups) != EDDY_OK)
      break;
    for (int i = 0; i < t->ngroups; i++)
      q->groups[i].complete = 1;
  }
  if (t->where == NULL || t->q[1].order.pos == NULL) {
    rt_destroy(&t->base);
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb timers: out of memory");
  }
  *out = &t->base;
  return EDDY_OK;
}

int eddy_rdb_timers_attach(eddy_timers *bt, rocksdb_t *db, rocksdb_writeoptions_t *wo,
                           rocksdb_column_family_handle_t *const cfs[2])
{
  rdb_timers *t = (rdb_timers *)bt;
  forget(t);
  t->db = db;
  t->wo = wo;
  t->version++;
  unsigned char end[2];
  put_kg(end, bt->last + 1);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, sizeof end);
  int rc = EDDY_OK;
  for (int k = 0; k < 2 && rc == EDDY_OK; k++) {
    tqueue *q = &t->q[k];
    q->cf = cfs[k];
    /* one iterator seeks to every group: a group per seek, not per
     * iterator */
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, q->cf);
    for (int kg = bt->first; kg <= bt->last && rc == EDDY_OK; kg++) {
      rc = cache_fill(t, q, kg, NULL, 0, it);
      order_update(q, kg - bt->first);
    }
    rocksdb_iter_destroy(it);
  }
  rocksdb_readoptions_destroy(ro);
  if (rc != EDDY_OK)
    forget(t);
  return rc;
}

void eddy_rdb_timers_detach(eddy_timers *bt)
{
  forget((rdb_timers *)bt);
}
