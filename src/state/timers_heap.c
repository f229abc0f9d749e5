/*
 * The timer service kept in memory (see timers.h for what it promises),
 * for the heap backend and for RocksDB with timer-service factory HEAP.
 *
 * Each kind of timer has, per key group of the range:
 *   - a min-heap of timer nodes in firing order, and
 *   - a hash set of the same nodes keyed by (timestamp, key, namespace),
 *     which gives registration its set semantics and lets delete find a
 *     timer without a scan.
 * A node records its own position in its heap and every sift rewrites it,
 * as Flink's HeapPriorityQueueElement does, so the hash set maps a triple to
 * its heap position through the node and delete is O(log n).
 *
 * With a million timers, popping is bound by cache misses, not by
 * compares (a dependent miss costs about 180 ns on the machine this was
 * measured on), so the heaps are laid out to touch few cache lines:
 *   - a heap entry holds the timestamp next to the node pointer, so a sift
 *     compares inside the heap array and reads a node only on a tie; the
 *     writes of moved nodes' positions are stores, which do not stall the
 *     sift as loads would;
 *   - the heaps are 4-ary: half the levels of a binary heap, so half the
 *     position writes per pop, and an entry's children lie in one or two
 *     cache lines. (Against a binary heap, 1,000,000 pops took about 8%
 *     less time; 8-ary gained nothing more.)
 *
 * On top sits the order of the non-empty key groups by their head timers
 * (timer_order.h): the global head is the head of its top group.
 *
 * Keeping the groups apart costs one more heap operation per change, but a
 * key group's timers can then be listed, dropped or (later) restored as a
 * whole, which is what snapshots and rescaling need.
 *
 * A group's heap array and hash slots are allocated on its first timer and
 * freed with its last, because most of up to 32768 key groups hold nothing
 * most of the time. A timer is one allocation: the node with its key and
 * namespace bytes behind it.
 */
#include "state/timer_order.h"
#include "state/timers_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "state/keygroup.h"
#include "util/msgpack.h"

/* A timer without its timestamp, which its heap slot holds. */
typedef struct tnode {
  uint32_t pos;  /* index in its group's heap */
  int32_t kg;    /* key group, kept for the cross-group order of each() */
  uint32_t klen; /* bytes[0 .. klen) is the key, then nslen namespace bytes */
  uint32_t nslen;
  unsigned char bytes[];
} tnode;

typedef struct entry {
  int64_t ts;
  tnode *node;
} entry;

typedef struct slot {
  uint64_t hash; /* of the node's triple, compared before the node */
  tnode *node;   /* NULL: free */
} slot;

typedef struct group {
  entry *heap;   /* NULL while empty */
  uint32_t count;
  uint32_t cap;
  slot *slots;   /* NULL while empty; at most 3/4 full */
  size_t mask;   /* slot capacity - 1, a power of two */
} group;

typedef struct queue {
  group *groups; /* one per key group of the range */
  eddy_timer_order order; /* the non-empty groups by head timer */
  size_t count;  /* timers in all groups */
} queue;

typedef struct heap_timers {
  eddy_timers base;
  int ngroups;
  queue q[2];
  tnode *popped; /* the last popped timer, whose bytes pop's caller reads */
  /* each() sorts a copy of the entries into walk and notices a change made
   * by a visitor through version. The copy hangs off t, not off the stack
   * of each(), so a visitor that raises (longjmp) leaks nothing: the next
   * walk or eddy_timers_free frees it. */
  entry *walk;
  unsigned long version;
} heap_timers;

/* ---- nodes ---- */

static const unsigned char *node_ns(const tnode *n) { return n->bytes + n->klen; }

/* Firing order, eddy's choice 2: timestamp, key group, key, namespace.
 * Within one group the key groups are equal, so the same functions order a
 * group's heap. */
static int node_cmp(const tnode *a, const tnode *b)
{
  if (a->kg != b->kg)
    return a->kg < b->kg ? -1 : 1;
  int c = eddy_mp_compare(a->bytes, a->klen, b->bytes, b->klen);
  if (c != 0)
    return c;
  return eddy_mp_compare(node_ns(a), a->nslen, node_ns(b), b->nslen);
}

static int entry_cmp(const entry *a, const entry *b)
{
  if (a->ts != b->ts)
    return a->ts < b->ts ? -1 : 1;
  return node_cmp(a->node, b->node);
}

/* The timestamp is the seed, so timers of one key at many times spread over
 * the table instead of sharing the key's slot run. */
static uint64_t triple_hash(int64_t ts, const void *key, size_t klen,
                            const void *ns, size_t nslen)
{
  uint64_t h = XXH3_64bits_withSeed(key, klen, (uint64_t)ts);
  return nslen > 0 ? XXH3_64bits_withSeed(ns, nslen, h) : h;
}

static void timer_of(const entry *e, eddy_timer *out)
{
  const tnode *n = e->node;
  out->timestamp = e->ts;
  out->key_group = n->kg;
  out->key = (eddy_slice){n->bytes, n->klen};
  out->ns = (eddy_slice){n->nslen > 0 ? node_ns(n) : NULL, n->nslen};
}

/* ---- a group's hash set ---- */

static slot *set_find(const group *g, uint64_t hash, const eddy_timer *tm)
{
  if (g->slots == NULL)
    return NULL;
  for (size_t i = hash & g->mask;; i = (i + 1) & g->mask) {
    slot *s = &g->slots[i];
    if (s->node == NULL)
      return NULL;
    const tnode *n = s->node;
    if (s->hash == hash && n->klen == tm->key.len && n->nslen == tm->ns.len &&
        g->heap[n->pos].ts == tm->timestamp &&
        memcmp(n->bytes, tm->key.data, n->klen) == 0 &&
        (n->nslen == 0 || memcmp(node_ns(n), tm->ns.data, n->nslen) == 0))
      return s;
  }
}

/* The slot of a heap entry's node. */
static slot *set_slot_of(const group *g, const entry *e)
{
  const tnode *n = e->node;
  uint64_t hash = triple_hash(e->ts, n->bytes, n->klen, node_ns(n), n->nslen);
  size_t i = hash & g->mask;
  while (g->slots[i].node != n)
    i = (i + 1) & g->mask;
  return &g->slots[i];
}

static void set_place(slot *slots, size_t mask, slot s)
{
  size_t i = s.hash & mask;
  while (slots[i].node != NULL)
    i = (i + 1) & mask;
  slots[i] = s;
}

/* Makes room for one more node, so that the insert that follows cannot
 * fail; on failure the set is unchanged. */
static int set_reserve(group *g)
{
  size_t cap = g->slots != NULL ? g->mask + 1 : 0;
  if (4 * ((size_t)g->count + 1) <= 3 * cap)
    return EDDY_OK;
  size_t bigger = cap != 0 ? 2 * cap : 8;
  slot *slots = calloc(bigger, sizeof *slots);
  if (slots == NULL)
    return EDDY_ENOMEM;
  for (size_t i = 0; i < cap; i++)
    if (g->slots[i].node != NULL)
      set_place(slots, bigger - 1, g->slots[i]);
  free(g->slots);
  g->slots = slots;
  g->mask = bigger - 1;
  return EDDY_OK;
}

/* Empties slot s, moving later members of its probe run back into the hole
 * where their home slot allows, so lookups need no tombstones. */
static void set_remove(group *g, slot *s)
{
  size_t hole = (size_t)(s - g->slots);
  for (size_t j = (hole + 1) & g->mask; g->slots[j].node != NULL;
       j = (j + 1) & g->mask) {
    size_t home = g->slots[j].hash & g->mask;
    if (((j - home) & g->mask) >= ((j - hole) & g->mask)) {
      g->slots[hole] = g->slots[j];
      hole = j;
    }
  }
  g->slots[hole].node = NULL;
}

/* ---- a group's heap ---- */

static void heap_set(group *g, uint32_t i, entry e)
{
  g->heap[i] = e;
  e.node->pos = i;
}

#define ARITY 4 /* children per heap entry; see the opening comment */

static void sift_up(group *g, uint32_t i)
{
  entry e = g->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / ARITY;
    if (entry_cmp(&e, &g->heap[parent]) >= 0)
      break;
    heap_set(g, i, g->heap[parent]);
    i = parent;
  }
  heap_set(g, i, e);
}

static void sift_down(group *g, uint32_t i)
{
  entry e = g->heap[i];
  for (;;) {
    uint64_t first = (uint64_t)ARITY * i + 1;
    if (first >= g->count)
      break;
    uint32_t end = first + ARITY < g->count ? (uint32_t)first + ARITY : g->count;
    uint32_t child = (uint32_t)first;
    for (uint32_t c = child + 1; c < end; c++)
      if (entry_cmp(&g->heap[c], &g->heap[child]) < 0)
        child = c;
    if (entry_cmp(&g->heap[child], &e) >= 0)
      break;
    heap_set(g, i, g->heap[child]);
    i = child;
  }
  heap_set(g, i, e);
}

/* Takes the entry at i out of the heap (not its node out of the set). */
static void heap_remove(group *g, uint32_t i)
{
  entry last = g->heap[--g->count];
  if (i == g->count)
    return;
  heap_set(g, i, last);
  sift_up(g, i);
  if (last.node->pos == i)
    sift_down(g, i);
}

/* Room for one more node in the heap; on failure the heap is unchanged. */
static int heap_reserve(group *g)
{
  if (g->count < g->cap)
    return EDDY_OK;
  if (g->cap == UINT32_MAX)
    return EDDY_ELIMIT;
  uint32_t cap = g->cap == 0 ? 4 : g->cap > UINT32_MAX / 2 ? UINT32_MAX : 2 * g->cap;
  entry *heap = realloc(g->heap, (size_t)cap * sizeof *heap);
  if (heap == NULL)
    return EDDY_ENOMEM;
  g->heap = heap;
  g->cap = cap;
  return EDDY_OK;
}

/* Gives an empty group's memory back (most groups are empty most of the
 * time, and a dropped or drained group should not keep its peak size). */
static void group_release(group *g)
{
  if (g->count != 0)
    return;
  free(g->heap);
  free(g->slots);
  g->heap = NULL;
  g->slots = NULL;
  g->cap = 0;
  g->mask = 0;
}

/* ---- the queue of groups ---- */

/* Called whenever group gi's head may have changed. */
static void order_update(queue *q, int gi)
{
  const group *g = &q->groups[gi];
  if (g->count == 0)
    eddy_timer_order_remove(&q->order, gi);
  else
    eddy_timer_order_set(&q->order, gi, g->heap[0].ts);
}

/* ---- the operations ---- */

static void group_free(group *g)
{
  for (uint32_t i = 0; i < g->count; i++)
    free(g->heap[i].node);
  g->count = 0;
  group_release(g);
}

static void heap_destroy(eddy_timers *bt)
{
  heap_timers *t = (heap_timers *)bt;
  for (int k = 0; k < 2; k++) {
    queue *q = &t->q[k];
    if (q->groups != NULL)
      for (int i = 0; i < t->ngroups; i++)
        group_free(&q->groups[i]);
    free(q->groups);
    eddy_timer_order_free(&q->order);
  }
  free(t->popped);
  free(t->walk);
  free(t);
}

static int heap_add(eddy_timers *bt, eddy_timer_kind kind, const eddy_timer *timer, int *added)
{
  heap_timers *t = (heap_timers *)bt;
  queue *q = &t->q[kind];
  int gi = timer->key_group - bt->first;
  group *g = &q->groups[gi];
  uint64_t hash = triple_hash(timer->timestamp, timer->key.data, timer->key.len,
                              timer->ns.data, timer->ns.len);
  if (set_find(g, hash, timer) != NULL)
    return EDDY_OK;

  /* Everything that can fail comes before the first change. */
  tnode *n = malloc(sizeof *n + timer->key.len + timer->ns.len);
  if (n == NULL)
    return eddy_seterr(&bt->err, EDDY_ENOMEM, "out of memory registering a timer");
  int rc;
  if ((rc = heap_reserve(g)) != EDDY_OK || (rc = set_reserve(g)) != EDDY_OK) {
    free(n);
    group_release(g);
    return rc == EDDY_ELIMIT
               ? eddy_seterr(&bt->err, rc, "too many timers in key group %d", timer->key_group)
               : eddy_seterr(&bt->err, rc, "out of memory registering a timer");
  }
  n->kg = timer->key_group;
  n->klen = (uint32_t)timer->key.len;
  n->nslen = (uint32_t)timer->ns.len;
  memcpy(n->bytes, timer->key.data, timer->key.len);
  if (timer->ns.len > 0)
    memcpy(n->bytes + n->klen, timer->ns.data, timer->ns.len);

  set_place(g->slots, g->mask, (slot){hash, n});
  heap_set(g, g->count++, (entry){timer->timestamp, n});
  sift_up(g, n->pos);
  q->count++;
  t->version++;
  if (n->pos == 0)
    order_update(q, gi);
  if (added != NULL)
    *added = 1;
  return EDDY_OK;
}

/* Takes the entry at pos out of group gi of q (s: its node's slot, if the
 * caller has it) and returns the entry, whose node is the caller's to free
 * or keep. */
static entry unlink_entry(queue *q, int gi, uint32_t pos, slot *s)
{
  group *g = &q->groups[gi];
  entry e = g->heap[pos];
  set_remove(g, s != NULL ? s : set_slot_of(g, &e));
  heap_remove(g, pos);
  q->count--;
  if (pos == 0)
    order_update(q, gi);
  group_release(g);
  return e;
}

static int heap_remove_timer(eddy_timers *bt, eddy_timer_kind kind, const eddy_timer *timer)
{
  heap_timers *t = (heap_timers *)bt;
  queue *q = &t->q[kind];
  int gi = timer->key_group - bt->first;
  uint64_t hash = triple_hash(timer->timestamp, timer->key.data, timer->key.len,
                              timer->ns.data, timer->ns.len);
  slot *s = set_find(&q->groups[gi], hash, timer);
  if (s != NULL) {
    free(unlink_entry(q, gi, s->node->pos, s).node);
    t->version++;
  }
  return EDDY_OK;
}

/* The earliest timer of q and its group, or NULL. */
static const entry *queue_head(const queue *q, int *gi)
{
  if ((*gi = eddy_timer_order_top(&q->order)) < 0)
    return NULL;
  return &q->groups[*gi].heap[0];
}

static int heap_head(eddy_timers *bt, eddy_timer_kind kind, eddy_timer *out)
{
  heap_timers *t = (heap_timers *)bt;
  int gi;
  const entry *head = queue_head(&t->q[kind], &gi);
  if (head == NULL)
    return eddy_seterr(&bt->err, EDDY_ENOTFOUND, "no pending timer");
  timer_of(head, out);
  return EDDY_OK;
}

static int heap_pop(eddy_timers *bt, eddy_timer_kind kind, int64_t limit, eddy_timer *out)
{
  heap_timers *t = (heap_timers *)bt;
  free(t->popped);
  t->popped = NULL;
  queue *q = &t->q[kind];
  int gi;
  const entry *head = queue_head(q, &gi);
  if (head == NULL || head->ts > limit)
    return eddy_seterr(&bt->err, EDDY_ENOTFOUND, "no timer due at %lld", (long long)limit);
  entry e = unlink_entry(q, gi, 0, NULL);
  t->popped = e.node;
  t->version++;
  timer_of(&e, out);
  return EDDY_OK;
}

static size_t heap_count(eddy_timers *bt, eddy_timer_kind kind)
{
  return ((heap_timers *)bt)->q[kind].count;
}

static int cmp_entries(const void *x, const void *y) { return entry_cmp(x, y); }

static int heap_each(eddy_timers *bt, eddy_timer_kind kind, int key_group,
                     int (*visit)(void *ud, const eddy_timer *timer), void *ud)
{
  heap_timers *t = (heap_timers *)bt;
  const queue *q = &t->q[kind];
  /* A heap is not in order. Sorting a copy of the entries leaves the heaps
   * alone and costs little next to what a visitor does with each timer.
   * A copy still in t->walk is from a walk cut short by a raise, or from
   * an outer walk that this one is nested in; the version bump makes that
   * one stop without reading its copy again, even when this one has
   * nothing to walk. */
  t->version++;
  size_t n = key_group == -1 ? q->count : q->groups[key_group - bt->first].count;
  if (n == 0)
    return EDDY_OK;
  free(t->walk);
  t->walk = malloc(n * sizeof *t->walk);
  if (t->walk == NULL)
    return eddy_seterr(&bt->err, EDDY_ENOMEM, "out of memory listing %zu timers", n);
  entry *all = t->walk;
  int from = key_group == -1 ? 0 : key_group - bt->first;
  int to = key_group == -1 ? t->ngroups - 1 : from;
  size_t k = 0;
  for (int gi = from; gi <= to; gi++) {
    const group *g = &q->groups[gi];
    if (g->count > 0)
      memcpy(all + k, g->heap, g->count * sizeof *all);
    k += g->count;
  }
  qsort(all, n, sizeof *all, cmp_entries);
  unsigned long version = t->version;
  int rc = EDDY_OK;
  for (size_t i = 0; i < n && rc == 0; i++) {
    eddy_timer tm;
    timer_of(&all[i], &tm);
    rc = visit(ud, &tm);
    /* The copy may now point at freed timers, or have been freed itself. */
    if (rc == 0 && t->version != version)
      rc = eddy_seterr(&bt->err, EDDY_EINVAL,
                       "timers were changed or walked again while each() visited them");
  }
  free(t->walk);
  t->walk = NULL;
  return rc;
}

static int heap_drop_key_group(eddy_timers *bt, int key_group)
{
  heap_timers *t = (heap_timers *)bt;
  t->version++;
  int gi = key_group - bt->first;
  for (int k = 0; k < 2; k++) {
    queue *q = &t->q[k];
    group *g = &q->groups[gi];
    q->count -= g->count;
    group_free(g);
    order_update(q, gi);
  }
  return EDDY_OK;
}

static const eddy_timers_ops heap_ops = {
  heap_add, heap_remove_timer, heap_head, heap_pop, heap_count, heap_each,
  heap_drop_key_group, heap_destroy,
};

int eddy_timers_new(int max_parallelism, int first_key_group, int last_key_group,
                    eddy_timers **out, eddy_err *err)
{
  if (out == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "timers: no result pointer");
  *out = NULL;
  heap_timers *t = calloc(1, sizeof *t);
  if (t == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "timers: out of memory");
  int rc = eddy_timers_base_init(&t->base, &heap_ops, max_parallelism, first_key_group,
                                 last_key_group, err);
  if (rc != EDDY_OK) {
    free(t);
    return rc;
  }
  t->ngroups = last_key_group - first_key_group + 1;
  for (int k = 0; k < 2; k++) {
    queue *q = &t->q[k];
    q->groups = calloc((size_t)t->ngroups, sizeof *q->groups);
    if (q->groups == NULL || eddy_timer_order_init(&q->order, t->ngroups) != EDDY_OK) {
      heap_destroy(&t->base);
      return eddy_seterr(err, EDDY_ENOMEM, "timers: out of memory");
    }
  }
  *out = &t->base;
  return EDDY_OK;
}
