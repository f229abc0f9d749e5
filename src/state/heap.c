/*
 * The heap backend: keyed state in hash tables in memory, the way Flink's
 * HashMapStateBackend keeps it.
 *
 * Each state has one table per key group of the backend's range, because
 * key groups are the unit of snapshots and rescaling: a snapshot can write
 * its key groups one after the other, and a restore at another parallelism
 * can take over whole tables. Most key groups may be empty, so a table
 * allocates its slots on the first insert and frees them with the last
 * remove.
 *
 * A table is keyed by the bytes key || namespace. Both are canonical
 * MessagePack, which is self-delimiting, so the concatenation is
 * unambiguous. A row's payload is one separately allocated byte string (a
 * value, or a list's elements back to back) or, for map state, a nested
 * table from user-key bytes to value bytes. Rows a restore makes carry
 * their payload inline, in the row's own allocation (see restoring), until
 * it outgrows it.
 *
 * The tables are open addressing with linear probing; a slot keeps the
 * 64-bit xxh3 of its item's key next to the pointer, so a lookup reads one
 * run of slots, then the one item whose hash matches, then its payload.
 * uthash was tried first: it lets a bucket chain grow to ten items before it
 * doubles, and reads every chained item to compare hashes. On the hot path
 * (get then put of a 30-byte value for one of 100,000 random keys) it took
 * 1.7 times as long, and it used a quarter more memory per row.
 *
 * Snapshots are copy-on-write, after Flink's CopyOnWriteStateMap: opening
 * one copies what every table's slot array points to (the row pointers,
 * without the free slots and hashes, which a snapshot that only iterates
 * does not need) and bumps a version; the rows are then shared between the
 * live tables and the snapshot, and the main thread copies a shared row
 * before it changes it. The rules that make a snapshot's writer thread safe
 * without any lock:
 *
 *  1. Every row is stamped with the backend's version when it is made.
 *     Opening a snapshot gives it the current version v and moves the
 *     backend on to v + 1; h->frozen is the version of the newest open
 *     snapshot, 0 when none is open. A live row is in (the copy of) some
 *     open snapshot exactly when row->version <= h->frozen ("shared"):
 *     it was made before the newest snapshot opened and, being live, has
 *     not been replaced since, so that snapshot copied a pointer to it.
 *  2. The main thread never writes to a shared row nor to anything it owns
 *     (payload, a map row's nested table and its entries). A change builds
 *     a private successor (for a map row, a copy of the whole nested table
 *     with its entries, as Flink copies the state object), puts it into the
 *     live slot and retires the old row. A private row changes in place, so
 *     with no snapshot open nothing is ever copied.
 *  3. A retired row (replaced or removed while shared) belongs to the
 *     newest open snapshot, which sees it. When a snapshot closes, each row
 *     it holds passes to the next older open snapshot if that one sees it
 *     too (row->version <= its version), and is freed otherwise: the
 *     snapshots opened after the row was retired never saw it, and those
 *     older than one that does not see it do not either. So nothing a
 *     snapshot can reach is freed while it is open.
 *  4. A snapshot has its own array of row pointers, so inserts, removes
 *     and rehashes of the live tables leave it alone.
 *
 * A snapshot's writer thread therefore reads only memory that nobody writes
 * until the snapshot closes (the main thread may read it too, in get). The
 * snapshot carries everything else it needs (key-group range, state kinds,
 * sort scratch), so next never touches the backend object.
 */
#include "state/backend_impl.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/msgpack.h"

struct heap_item;

typedef struct slot {
  uint64_t hash;          /* of the item's key, compared before the key */
  struct heap_item *item; /* NULL: free */
} slot;

/* At most 3/4 full, so every probe run ends at a free slot. */
typedef struct table {
  slot *slots; /* NULL while empty */
  size_t mask; /* capacity - 1; the capacity is a power of two */
  size_t count;
} table;

/* A row of a state, or an entry of a map row. */
typedef struct heap_item {
  union {
    eddy_buf bytes; /* a value, a list's elements, a map entry's value */
    table map;      /* a map row's entries; never empty */
  } u;
  uint64_t version; /* rows: the backend's version when made (rule 1) */
  uint32_t len;    /* of key[] */
  uint32_t ns_off; /* rows: key[0 .. ns_off) is the key, then the namespace */
  /* u.bytes.data lies in this allocation, right after key[], and is not
   * freed on its own: a restore makes each item with one malloc */
  unsigned char inline_bytes;
  unsigned char key[];
} heap_item;

/* Bytes of an item with len bytes of key (the struct's tail padding may
 * hold key bytes, so not sizeof). */
#define ITEM_SIZE(len) (offsetof(heap_item, key) + (len))

typedef struct heap_state {
  eddy_state_kind kind;
  table *groups; /* one per key group of the range */
} heap_state;

/* Room to sort a map row's entries. The backend has one and every snapshot
 * its own, because snapshots sort on their writer threads. */
typedef struct sorter {
  heap_item **order;
  size_t cap;
} sorter;

/* Rows the live tables let go of while a snapshot still sees them (rule
 * 3), in chunks, so that passing them to another snapshot never
 * allocates. */
enum { RETIRED_CHUNK = 250 };

typedef struct retired {
  struct retired *next;
  uint32_t n;
  unsigned char is_map[RETIRED_CHUNK];
  heap_item *rows[RETIRED_CHUNK];
} retired;

typedef struct heap_snapshot {
  eddy_backend_snapshot base;
  /* the main thread's part */
  uint64_t version;
  struct heap_snapshot *older; /* the open snapshots, by version */
  struct heap_snapshot *newer;
  retired *retired;
  /* frozen at the open, read by the writer thread */
  int first_key_group;
  uint32_t nstates;
  size_t ntables;
  unsigned char *is_map; /* per state */
  heap_item **rows;      /* the rows of every table, table after table */
  size_t nrows;
  size_t *ends;          /* where each table's rows end in rows; tables
                            by key group, then state */
  /* the writer thread's position and scratch */
  size_t table;
  size_t next; /* in rows */
  eddy_buf out;
  sorter sort;
} heap_snapshot;

/* Rows a restore handed over that wait to go into one table, the rows of
 * one state in one key group (see restoring, below). */
typedef struct load {
  uint32_t state;
  int key_group;
  slot *rows; /* hashed; not in any table yet */
  size_t n;
  size_t cap;
} load;

typedef struct heap_backend {
  eddy_backend base;
  int ngroups;
  uint32_t nstates;
  uint32_t states_cap;
  heap_state *states;
  uint64_t version;      /* stamped on new rows; starts at 1 (rule 1) */
  uint64_t frozen;       /* version of the newest open snapshot, 0: none */
  heap_snapshot *newest; /* open snapshots, linked through older */
  eddy_buf rk;           /* key || namespace of the row being looked up */
  eddy_buf out;          /* what map_entries hands out */
  sorter sort;
  load load;             /* between restore_row and restore_done */
} heap_backend;

/* ---- tables ---- */

/* The slot holding key, or NULL. */
static slot *table_find(const table *t, const void *key, size_t len,
                        uint64_t hash)
{
  if (t->slots == NULL)
    return NULL;
  for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
    slot *s = &t->slots[i];
    if (s->item == NULL)
      return NULL;
    if (s->hash == hash && s->item->len == len &&
        memcmp(s->item->key, key, len) == 0)
      return s;
  }
}

/* Puts s into the first free slot from its home slot on. */
static void place(slot *slots, size_t mask, slot s)
{
  size_t i = s.hash & mask;
  while (slots[i].item != NULL)
    i = (i + 1) & mask;
  slots[i] = s;
}

/* Makes t big enough for n items, in one step however far it grows. If
 * that fails, t is unchanged. */
static int table_reserve(table *t, size_t n)
{
  size_t cap = t->slots != NULL ? t->mask + 1 : 0, bigger = cap != 0 ? cap : 8;
  if (n > SIZE_MAX / 8 / sizeof(slot))
    return EDDY_ENOMEM;
  while (4 * n > 3 * bigger)
    bigger *= 2;
  if (bigger == cap)
    return EDDY_OK;
  /* A large calloc gets untouched pages from the kernel, and the probes
   * would read each one (mapping the zero page) before writing it (copying
   * that): two page faults instead of one, which made a tenth of the time
   * a restore took. So large tables write every slot's item first (the
   * hashes of free slots are never read), in a loop, as compilers turn
   * malloc and memset into calloc. */
  size_t bytes = bigger * sizeof(slot);
  slot *slots = bytes < ((size_t)64 << 10) ? calloc(bigger, sizeof *slots)
                                             : malloc(bytes);
  if (slots == NULL)
    return EDDY_ENOMEM;
  if (bytes >= ((size_t)64 << 10))
    for (size_t i = 0; i < bigger; i++)
      slots[i].item = NULL;
  for (size_t i = 0; i < cap; i++)
    if (t->slots[i].item != NULL)
      place(slots, bigger - 1, t->slots[i]);
  free(t->slots);
  t->slots = slots;
  t->mask = bigger - 1;
  return EDDY_OK;
}

/* Adds an item whose key is not in t. If growing fails, t is unchanged. */
static int table_insert(table *t, heap_item *item, uint64_t hash)
{
  size_t cap = t->slots != NULL ? t->mask + 1 : 0;
  if (4 * (t->count + 1) > 3 * cap && table_reserve(t, t->count + 1) != EDDY_OK)
    return EDDY_ENOMEM;
  place(t->slots, t->mask, (slot){hash, item});
  t->count++;
  return EDDY_OK;
}

/* Empties slot s. The items after it in its probe run move back into the
 * hole when their home slot allows, so lookups need no tombstones. */
static void table_remove(table *t, slot *s)
{
  size_t hole = (size_t)(s - t->slots);
  for (size_t j = (hole + 1) & t->mask; t->slots[j].item != NULL;
       j = (j + 1) & t->mask) {
    size_t home = t->slots[j].hash & t->mask;
    if (((j - home) & t->mask) >= ((j - hole) & t->mask)) {
      t->slots[hole] = t->slots[j];
      hole = j;
    }
  }
  t->slots[hole].item = NULL;
  if (--t->count == 0) {
    free(t->slots);
    t->slots = NULL;
    t->mask = 0;
  }
}

/* The next item from slot *i on: for (i = 0; (it = table_next(t, &i));) */
static heap_item *table_next(const table *t, size_t *i)
{
  while (t->slots != NULL && *i <= t->mask) {
    heap_item *item = t->slots[(*i)++].item;
    if (item != NULL)
      return item;
  }
  return NULL;
}

/* ---- items ---- */

/* An item with an empty payload, in no table yet. */
static heap_item *new_item(const void *key, size_t len, size_t ns_off,
                           uint64_t version)
{
  heap_item *it = malloc(ITEM_SIZE(len));
  if (it == NULL)
    return NULL;
  memset(it, 0, offsetof(heap_item, key));
  it->version = version;
  it->len = (uint32_t)len;
  it->ns_off = (uint32_t)ns_off;
  memcpy(it->key, key, len);
  return it;
}

/* Frees an item that is in no table. */
static void free_item(heap_item *it, int is_map)
{
  if (is_map) {
    heap_item *e;
    for (size_t i = 0; (e = table_next(&it->u.map, &i)) != NULL;)
      free_item(e, 0);
    free(it->u.map.slots);
  } else if (!it->inline_bytes) {
    free(it->u.bytes.data);
  }
  free(it);
}

/*
 * Stores n > 0 bytes as the payload of it. The allocation is reused when the
 * bytes fit and fill at least half of it: rewriting a value of about the
 * same size never allocates, and a value that shrank a lot gives its memory
 * back. Inline bytes are reused whenever the bytes fit, since their memory
 * goes only with the item. v may point into the payload (a slice from get
 * handed back to put).
 */
static int set_bytes(heap_item *it, const void *v, size_t n)
{
  eddy_buf *buf = &it->u.bytes;
  if (n <= buf->cap && (n >= buf->cap / 2 || it->inline_bytes)) {
    memmove(buf->data, v, n);
    buf->len = n;
    return EDDY_OK;
  }
  unsigned char *p = malloc(n);
  if (p == NULL)
    return EDDY_ENOMEM;
  memcpy(p, v, n);
  if (!it->inline_bytes)
    free(buf->data);
  it->inline_bytes = 0;
  buf->data = p;
  buf->len = buf->cap = n;
  return EDDY_OK;
}

/* Appends to the payload of it with doubling growth (amortised O(1)). v may be
 * a slice of the payload itself (a list appended to itself), which growing
 * would free, so its offset is taken first. Inline bytes that must grow
 * move to an allocation of their own. */
static int append_bytes(heap_item *it, const void *v, size_t n)
{
  eddy_buf *buf = &it->u.bytes;
  uintptr_t p = (uintptr_t)v, lo = (uintptr_t)buf->data;
  int inside = buf->data != NULL && p >= lo && p < lo + buf->len;
  size_t off = inside ? (size_t)(p - lo) : 0;
  if (it->inline_bytes && buf->cap - buf->len < n) {
    eddy_buf own = EDDY_BUF_INIT;
    if (eddy_buf_reserve(&own, buf->len + n) != EDDY_OK)
      return EDDY_ENOMEM;
    memcpy(own.data, buf->data, buf->len);
    own.len = buf->len;
    *buf = own;
    it->inline_bytes = 0;
  } else if (eddy_buf_reserve(buf, n) != EDDY_OK) {
    return EDDY_ENOMEM;
  }
  memcpy(buf->data + buf->len, inside ? buf->data + off : v, n);
  buf->len += n;
  return EDDY_OK;
}

static int cmp_items(const void *x, const void *y)
{
  const heap_item *a = *(heap_item *const *)x, *b = *(heap_item *const *)y;
  return eddy_mp_compare(a->key, a->len, b->key, b->len);
}

/* Appends a map row's entries as user key, value, ... in user-key order. */
static int write_entries(sorter *so, eddy_buf *out, const heap_item *row)
{
  const table *map = &row->u.map;
  if (map->count > so->cap) {
    size_t cap = map->count > 2 * so->cap ? map->count : 2 * so->cap;
    heap_item **order = realloc(so->order, cap * sizeof *order);
    if (order == NULL)
      return EDDY_ENOMEM;
    so->order = order;
    so->cap = cap;
  }
  size_t n = 0;
  heap_item *e;
  for (size_t i = 0; (e = table_next(map, &i)) != NULL;)
    so->order[n++] = e;
  qsort(so->order, n, sizeof *so->order, cmp_items);
  for (size_t i = 0; i < n; i++) {
    e = so->order[i];
    if (eddy_buf_append(out, e->key, e->len) != EDDY_OK ||
        eddy_buf_append(out, e->u.bytes.data, e->u.bytes.len) != EDDY_OK)
      return EDDY_ENOMEM;
  }
  return EDDY_OK;
}

/* ---- finding rows ---- */

/* Where a row lives or would live. */
typedef struct lookup {
  table *t;
  const void *rk; /* key || namespace */
  size_t rk_len;
  size_t key_len;
  uint64_t hash;
  slot *s; /* the row's slot; NULL if absent */
} lookup;

static int out_of_memory(heap_backend *h, uint32_t state)
{
  return eddy_seterr(&h->base.err, EDDY_ENOMEM,
                     "heap backend: out of memory in state '%s'",
                     h->base.states[state].name);
}

static int absent(heap_backend *h, const eddy_row *row)
{
  return eddy_seterr(&h->base.err, EDDY_ENOTFOUND,
                     "state '%s' has nothing for this key and namespace",
                     h->base.states[row->state].name);
}

/* Fills lk for row; *found is the row, or NULL if absent. */
static int locate(heap_backend *h, const eddy_row *row, lookup *lk,
                  heap_item **found)
{
  if (row->ns_len > UINT32_MAX || row->key_len > UINT32_MAX - row->ns_len)
    return eddy_seterr(&h->base.err, EDDY_ELIMIT,
                       "state '%s': key and namespace longer than 4 GiB",
                       h->base.states[row->state].name);
  lk->t = &h->states[row->state].groups[row->key_group - h->base.first_key_group];
  lk->key_len = row->key_len;
  lk->rk_len = row->key_len + row->ns_len;
  if (row->ns_len == 0) {
    lk->rk = row->key; /* the common case needs no copy */
  } else {
    eddy_buf_reset(&h->rk);
    if (eddy_buf_append(&h->rk, row->key, row->key_len) != EDDY_OK ||
        eddy_buf_append(&h->rk, row->ns, row->ns_len) != EDDY_OK)
      return out_of_memory(h, row->state);
    lk->rk = h->rk.data;
  }
  lk->hash = XXH3_64bits(lk->rk, lk->rk_len);
  lk->s = table_find(lk->t, lk->rk, lk->rk_len, lk->hash);
  *found = lk->s != NULL ? lk->s->item : NULL;
  return EDDY_OK;
}

static heap_item *new_row(const heap_backend *h, const lookup *lk)
{
  return new_item(lk->rk, lk->rk_len, lk->key_len, h->version);
}

/* ---- copy-on-write (rules 1 to 3 at the top) ---- */

/* Whether an open snapshot sees the live row r. */
static inline int shared(const heap_backend *h, const heap_item *r)
{
  return r->version <= h->frozen;
}

/* Makes room for one more retired row in the newest snapshot, so that
 * retire, which comes after the live table changed, cannot fail. Only
 * called while a snapshot is open (a row is shared). */
static int retire_reserve(heap_backend *h)
{
  heap_snapshot *s = h->newest;
  if (s->retired != NULL && s->retired->n < RETIRED_CHUNK)
    return EDDY_OK;
  retired *c = malloc(sizeof *c);
  if (c == NULL)
    return EDDY_ENOMEM;
  c->next = s->retired;
  c->n = 0;
  s->retired = c;
  return EDDY_OK;
}

/* Gives a shared row the live table no longer holds to the newest
 * snapshot, which sees it (rule 3). */
static void retire(heap_backend *h, heap_item *r, int is_map)
{
  retired *c = h->newest->retired;
  c->is_map[c->n] = (unsigned char)is_map;
  c->rows[c->n++] = r;
}

/* Takes row r, found by lk, out of its live table: freed if it is private,
 * retired if a snapshot sees it. */
static int drop_row(heap_backend *h, const lookup *lk, heap_item *r,
                    int is_map)
{
  int keep = shared(h, r);
  if (keep && retire_reserve(h) != EDDY_OK)
    return EDDY_ENOMEM;
  table_remove(lk->t, lk->s);
  if (keep)
    retire(h, r, is_map);
  else
    free_item(r, is_map);
  return EDDY_OK;
}

/* A private copy of map row r: its nested table with every entry copied,
 * entries in the same slots, so slot positions carry over. */
static heap_item *copy_map_row(const heap_backend *h, const heap_item *r)
{
  heap_item *c = new_item(r->key, r->len, r->ns_off, h->version);
  if (c == NULL)
    return NULL;
  const table *from = &r->u.map;
  table *to = &c->u.map;
  if ((to->slots = calloc(from->mask + 1, sizeof *to->slots)) == NULL) {
    free(c);
    return NULL;
  }
  to->mask = from->mask;
  for (size_t i = 0; i <= from->mask; i++) {
    const heap_item *e = from->slots[i].item;
    if (e == NULL)
      continue;
    heap_item *ce = new_item(e->key, e->len, e->ns_off, 0);
    if (ce == NULL || set_bytes(ce, e->u.bytes.data, e->u.bytes.len) != EDDY_OK) {
      free(ce);
      free_item(c, 1);
      return NULL;
    }
    to->slots[i] = (slot){from->slots[i].hash, ce};
    to->count++;
  }
  return c;
}

/* Replaces the shared map row *r, found by lk, with a private copy in the
 * live table and retires *r; *r becomes the copy. */
static int unshare_map(heap_backend *h, const lookup *lk, heap_item **r)
{
  heap_item *c = copy_map_row(h, *r);
  if (c == NULL)
    return EDDY_ENOMEM;
  if (retire_reserve(h) != EDDY_OK) {
    free_item(c, 1);
    return EDDY_ENOMEM;
  }
  lk->s->item = c;
  retire(h, *r, 1);
  *r = c;
  return EDDY_OK;
}

/* ---- states ---- */

static int heap_add_state(eddy_backend *b, uint32_t id, const char *name,
                          eddy_state_kind kind)
{
  heap_backend *h = (heap_backend *)b;
  if (id == h->states_cap) {
    uint32_t cap = h->states_cap ? 2 * h->states_cap : 8;
    heap_state *s = realloc(h->states, cap * sizeof *s);
    if (s == NULL)
      goto oom;
    h->states = s;
    h->states_cap = cap;
  }
  table *groups = calloc((size_t)h->ngroups, sizeof *groups);
  if (groups == NULL)
    goto oom;
  h->states[id].kind = kind;
  h->states[id].groups = groups;
  h->nstates = id + 1;
  return EDDY_OK;
oom:
  return eddy_seterr(&b->err, EDDY_ENOMEM,
                     "heap backend: out of memory adding state '%s'", name);
}

/* ---- value-like and list rows ---- */

/* A list row's payload is its elements back to back, so this is list_get
 * too. */
static int heap_get(eddy_backend *b, const eddy_row *row, eddy_slice *value)
{
  heap_backend *h = (heap_backend *)b;
  lookup lk;
  heap_item *r;
  int rc = locate(h, row, &lk, &r);
  if (rc != EDDY_OK)
    return rc;
  if (r == NULL)
    return absent(h, row);
  value->data = r->u.bytes.data;
  value->len = r->u.bytes.len;
  return EDDY_OK;
}

/* Replaces (or, with append, extends) the payload of a row, creating the
 * row when it is absent. v may point into the row's own payload. */
static int write_row(heap_backend *h, const eddy_row *row, const void *v,
                     size_t n, int append)
{
  lookup lk;
  heap_item *r;
  int rc = locate(h, row, &lk, &r);
  if (rc != EDDY_OK)
    return rc;
  if (r != NULL && !shared(h, r)) {
    rc = append ? append_bytes(r, v, n) : set_bytes(r, v, n);
    return rc == EDDY_OK ? EDDY_OK : out_of_memory(h, row->state);
  }

  /* A new row, or the successor of a shared one (rule 2): built aside, so
   * that a failure on the way leaves the live table as it was. */
  heap_item *nr = new_row(h, &lk);
  if (nr == NULL)
    return out_of_memory(h, row->state);
  size_t keep = append && r != NULL ? r->u.bytes.len : 0;
  if (!append) {
    rc = set_bytes(nr, v, n);
  } else if ((rc = eddy_buf_reserve(&nr->u.bytes, keep + n)) == EDDY_OK) {
    if (keep > 0)
      memcpy(nr->u.bytes.data, r->u.bytes.data, keep);
    memcpy(nr->u.bytes.data + keep, v, n);
    nr->u.bytes.len = keep + n;
  }
  if (rc == EDDY_OK)
    rc = r != NULL ? retire_reserve(h) : table_insert(lk.t, nr, lk.hash);
  if (rc != EDDY_OK) {
    free_item(nr, 0);
    return out_of_memory(h, row->state);
  }
  if (r != NULL) {
    lk.s->item = nr;
    retire(h, r, 0);
  }
  return EDDY_OK;
}

static int heap_put(eddy_backend *b, const eddy_row *row, const void *v,
                    size_t n)
{
  return write_row((heap_backend *)b, row, v, n, 0);
}

static int heap_clear(eddy_backend *b, const eddy_row *row)
{
  heap_backend *h = (heap_backend *)b;
  lookup lk;
  heap_item *r;
  int rc = locate(h, row, &lk, &r);
  if (rc != EDDY_OK || r == NULL)
    return rc;
  if (drop_row(h, &lk, r, h->states[row->state].kind == EDDY_STATE_MAP) != EDDY_OK)
    return out_of_memory(h, row->state);
  return EDDY_OK;
}

static int heap_list_append(eddy_backend *b, const eddy_row *row,
                            const void *v, size_t n)
{
  return write_row((heap_backend *)b, row, v, n, 1);
}

static int heap_list_set(eddy_backend *b, const eddy_row *row, const void *v,
                         size_t n)
{
  return n == 0 ? heap_clear(b, row) : heap_put(b, row, v, n);
}

/* ---- map rows ---- */

static int check_ukey(heap_backend *h, const eddy_row *row, size_t ukn)
{
  if (ukn > UINT32_MAX)
    return eddy_seterr(&h->base.err, EDDY_ELIMIT,
                       "state '%s': map key longer than 4 GiB",
                       h->base.states[row->state].name);
  return EDDY_OK;
}

/* The slot of map row r (maybe absent) that holds user key uk, or NULL. */
static slot *find_entry(heap_item *r, const void *uk, size_t ukn,
                        uint64_t hash)
{
  return r != NULL ? table_find(&r->u.map, uk, ukn, hash) : NULL;
}

static int heap_map_get(eddy_backend *b, const eddy_row *row, const void *uk,
                        size_t ukn, eddy_slice *value)
{
  heap_backend *h = (heap_backend *)b;
  lookup lk;
  heap_item *r;
  int rc = check_ukey(h, row, ukn);
  if (rc != EDDY_OK || (rc = locate(h, row, &lk, &r)) != EDDY_OK)
    return rc;
  uint64_t hash = XXH3_64bits(uk, ukn);
  slot *s = find_entry(r, uk, ukn, hash);
  if (s == NULL)
    return absent(h, row);
  value->data = s->item->u.bytes.data;
  value->len = s->item->u.bytes.len;
  return EDDY_OK;
}

static int heap_map_put(eddy_backend *b, const eddy_row *row, const void *uk,
                        size_t ukn, const void *v, size_t n)
{
  heap_backend *h = (heap_backend *)b;
  lookup lk;
  heap_item *r;
  int rc = check_ukey(h, row, ukn);
  if (rc != EDDY_OK || (rc = locate(h, row, &lk, &r)) != EDDY_OK)
    return rc;
  uint64_t hash = XXH3_64bits(uk, ukn);
  if (r != NULL && shared(h, r) && unshare_map(h, &lk, &r) != EDDY_OK)
    return out_of_memory(h, row->state);
  slot *s = find_entry(r, uk, ukn, hash);
  if (s != NULL)
    return set_bytes(s->item, v, n) == EDDY_OK
               ? EDDY_OK
               : out_of_memory(h, row->state);

  /* A new entry, maybe in a new row: the row goes into its table last, so
   * that a failure on the way leaves nothing behind. */
  heap_item *e = new_item(uk, ukn, ukn, 0);
  if (e == NULL)
    return out_of_memory(h, row->state);
  if (set_bytes(e, v, n) != EDDY_OK) {
    free_item(e, 0);
    return out_of_memory(h, row->state);
  }
  int fresh = r == NULL;
  if (fresh && (r = new_row(h, &lk)) == NULL) {
    free_item(e, 0);
    return out_of_memory(h, row->state);
  }
  if (table_insert(&r->u.map, e, hash) != EDDY_OK) {
    free_item(e, 0);
    if (fresh)
      free_item(r, 1);
    return out_of_memory(h, row->state);
  }
  if (fresh && table_insert(lk.t, r, lk.hash) != EDDY_OK) {
    free_item(r, 1);
    return out_of_memory(h, row->state);
  }
  return EDDY_OK;
}

static int heap_map_remove(eddy_backend *b, const eddy_row *row,
                           const void *uk, size_t ukn)
{
  heap_backend *h = (heap_backend *)b;
  lookup lk;
  heap_item *r;
  int rc = check_ukey(h, row, ukn);
  if (rc != EDDY_OK || (rc = locate(h, row, &lk, &r)) != EDDY_OK)
    return rc;
  uint64_t hash = XXH3_64bits(uk, ukn);
  slot *s = find_entry(r, uk, ukn, hash);
  if (s == NULL)
    return EDDY_OK;
  if (r->u.map.count == 1) /* an empty map is an absent row */
    return drop_row(h, &lk, r, 1) == EDDY_OK ? EDDY_OK : out_of_memory(h, row->state);
  if (shared(h, r)) {
    size_t at = (size_t)(s - r->u.map.slots); /* the copy keeps positions */
    if (unshare_map(h, &lk, &r) != EDDY_OK)
      return out_of_memory(h, row->state);
    s = &r->u.map.slots[at];
  }
  heap_item *e = s->item;
  table_remove(&r->u.map, s);
  free_item(e, 0);
  return EDDY_OK;
}

static int heap_map_entries(eddy_backend *b, const eddy_row *row,
                            eddy_slice *entries)
{
  heap_backend *h = (heap_backend *)b;
  lookup lk;
  heap_item *r;
  int rc = locate(h, row, &lk, &r);
  if (rc != EDDY_OK)
    return rc;
  if (r == NULL)
    return absent(h, row);
  eddy_buf_reset(&h->out);
  if (write_entries(&h->sort, &h->out, r) != EDDY_OK)
    return out_of_memory(h, row->state);
  entries->data = h->out.data;
  entries->len = h->out.len;
  return EDDY_OK;
}

/* ---- restoring ----
 *
 * A restore hands over whole rows: key group by key group, and (from a
 * snapshot of this backend) state by state within a key group, so the rows
 * come in runs that go into one table. Putting them in one by one, as put
 * does, was most of the time a restore took: a lookup before each insert,
 * a table doubling its way from 8 slots to its final size and faulting in
 * every size's pages, and two allocations per row. Here a run waits in
 * h->load (up to LOAD_BATCH rows) and then goes in at once: the table grows
 * once, to its final size, and each row is one allocation, its payload
 * inline behind the key.
 */

enum { LOAD_BATCH = 1 << 16 }; /* 1 MiB of waiting slots at most */

/* An item with key k || ns and, if n > 0, the n bytes at v as its inline
 * payload; in no table yet. */
static heap_item *new_inline_item(const void *k, size_t kn, const void *ns,
                                  size_t nsn, const void *v, size_t n,
                                  uint64_t version)
{
  size_t len = kn + nsn;
  if (n > SIZE_MAX - ITEM_SIZE(len))
    return NULL;
  heap_item *it = malloc(ITEM_SIZE(len) + n);
  if (it == NULL)
    return NULL;
  memset(it, 0, offsetof(heap_item, key));
  it->version = version;
  it->len = (uint32_t)len;
  it->ns_off = (uint32_t)kn;
  memcpy(it->key, k, kn);
  if (nsn > 0)
    memcpy(it->key + kn, ns, nsn);
  if (n > 0) {
    it->inline_bytes = 1;
    it->u.bytes.data = it->key + len;
    it->u.bytes.len = it->u.bytes.cap = n;
    memcpy(it->u.bytes.data, v, n);
  }
  return it;
}

/* Puts item into t, which has room for it (table_reserve), in place of
 * the item with the same key if there is one; returns that one, or NULL. */
static heap_item *table_put(table *t, heap_item *item, uint64_t hash)
{
  for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
    slot *s = &t->slots[i];
    if (s->item == NULL) {
      *s = (slot){hash, item};
      t->count++;
      return NULL;
    }
    if (s->hash == hash && s->item->len == item->len &&
        memcmp(s->item->key, item->key, item->len) == 0) {
      heap_item *old = s->item;
      s->item = item;
      return old;
    }
  }
}

/* The map row key || ns whose entries are the snapshot's payload p: user
 * key, value, ... (whole MessagePack values, which the public function
 * checked). A user key given twice keeps its last value. */
/* The lengths of the user key and value at p, which end by end. */
static void entry_len(const unsigned char *p, const unsigned char *end,
                      size_t *kl, size_t *vl)
{
  if (eddy_mp_value_len(p, (size_t)(end - p), kl) != EDDY_OK ||
      eddy_mp_value_len(p + *kl, (size_t)(end - p) - *kl, vl) != EDDY_OK) {
    /* not reached (the public function checked), but stays in bounds */
    *kl = (size_t)(end - p);
    *vl = 0;
  }
}

static heap_item *new_map_row(const heap_backend *h, const eddy_row *row,
                              const unsigned char *p, size_t n)
{
  size_t count = 0, kl, vl;
  for (size_t done = 0; done < n; done += kl + vl, count++)
    entry_len(p + done, p + n, &kl, &vl);
  heap_item *r = new_inline_item(row->key, row->key_len, row->ns, row->ns_len,
                                 NULL, 0, h->version);
  if (r == NULL || table_reserve(&r->u.map, count) != EDDY_OK) {
    free(r);
    return NULL;
  }
  for (size_t done = 0; done < n; done += kl + vl) {
    entry_len(p + done, p + n, &kl, &vl);
    heap_item *e = new_inline_item(p + done, kl, NULL, 0, p + done + kl, vl, 0);
    if (e == NULL) {
      free_item(r, 1);
      return NULL;
    }
    heap_item *old = table_put(&r->u.map, e, XXH3_64bits(e->key, e->len));
    if (old != NULL)
      free_item(old, 0);
  }
  return r;
}

/* Frees the waiting rows from the i-th on. */
static void load_discard(heap_backend *h, size_t i)
{
  load *l = &h->load;
  int is_map = l->n > 0 && h->states[l->state].kind == EDDY_STATE_MAP;
  for (; i < l->n; i++)
    free_item(l->rows[i].item, is_map);
  l->n = 0;
}

/* Puts the waiting rows into their table, which grows once to hold them
 * all; a row replaces one with the same key (freed, or retired if a
 * snapshot sees it). On failure, the rows not in the table yet are
 * freed. */
static int load_flush(heap_backend *h)
{
  load *l = &h->load;
  heap_state *st = &h->states[l->state];
  table *t = &st->groups[l->key_group - h->base.first_key_group];
  int is_map = st->kind == EDDY_STATE_MAP;
  size_t i = 0;
  if (table_reserve(t, t->count + l->n) != EDDY_OK)
    goto oom;
  for (; i < l->n; i++) {
    if (h->frozen != 0 && retire_reserve(h) != EDDY_OK)
      goto oom;
    heap_item *old = table_put(t, l->rows[i].item, l->rows[i].hash);
    if (old == NULL)
      continue;
    if (shared(h, old))
      retire(h, old, is_map);
    else
      free_item(old, is_map);
  }
  l->n = 0;
  return EDDY_OK;
oom:
  load_discard(h, i);
  return eddy_seterr(&h->base.err, EDDY_ENOMEM,
                     "heap backend: out of memory restoring state '%s'",
                     h->base.states[l->state].name);
}

static int heap_restore_row(eddy_backend *b, const eddy_row *row,
                            const void *v, size_t n)
{
  heap_backend *h = (heap_backend *)b;
  load *l = &h->load;
  int rc;
  if (row->ns_len > UINT32_MAX || row->key_len > UINT32_MAX - row->ns_len)
    return eddy_seterr(&b->err, EDDY_ELIMIT,
                       "state '%s': key and namespace longer than 4 GiB",
                       b->states[row->state].name);
  if (l->n > 0 && (l->n == LOAD_BATCH || l->state != row->state ||
                   l->key_group != row->key_group) &&
      (rc = load_flush(h)) != EDDY_OK)
    return rc;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 256;
    slot *rows = realloc(l->rows, cap * sizeof *rows);
    if (rows == NULL)
      return out_of_memory(h, row->state);
    l->rows = rows;
    l->cap = cap;
  }
  heap_item *r = h->states[row->state].kind == EDDY_STATE_MAP
                     ? new_map_row(h, row, v, n)
                     : new_inline_item(row->key, row->key_len, row->ns,
                                       row->ns_len, v, n, h->version);
  if (r == NULL)
    return out_of_memory(h, row->state);
  l->state = row->state;
  l->key_group = row->key_group;
  l->rows[l->n++] = (slot){XXH3_64bits(r->key, r->len), r};
  return EDDY_OK;
}

static int heap_restore_done(eddy_backend *b)
{
  heap_backend *h = (heap_backend *)b;
  int rc = h->load.n > 0 ? load_flush(h) : EDDY_OK;
  free(h->load.rows);
  h->load.rows = NULL;
  h->load.cap = 0;
  return rc;
}

/* ---- cursors ---- */

/* A row as the cursor copied it. */
typedef struct cursor_row {
  int key_group;
  uint32_t key_len;
  uint32_t ns_len;
  size_t off; /* key, namespace, then the value, in the cursor's data */
  size_t value_len;
} cursor_row;

typedef struct heap_cursor {
  eddy_backend_cursor base;
  uint32_t state;
  size_t nrows;
  size_t next;
  cursor_row *rows;
  eddy_buf data;
} heap_cursor;

static int cmp_cursor_rows(const void *x, const void *y, void *data)
{
  const cursor_row *a = x, *b = y;
  const unsigned char *d = data;
  if (a->key_group != b->key_group)
    return a->key_group < b->key_group ? -1 : 1;
  int c = eddy_mp_compare(d + a->off, a->key_len, d + b->off, b->key_len);
  if (c != 0)
    return c;
  return eddy_mp_compare(d + a->off + a->key_len, a->ns_len,
                         d + b->off + b->key_len, b->ns_len);
}

static void heap_cursor_close(eddy_backend_cursor *bc)
{
  heap_cursor *c = (heap_cursor *)bc;
  free(c->rows);
  eddy_buf_free(&c->data);
  free(c);
}

/* Copies every row of the state, so that writes after the open cannot
 * disturb the cursor: snapshot semantics, at the price of a copy. */
static int heap_cursor_open(eddy_backend *b, uint32_t state,
                            eddy_backend_cursor **out)
{
  heap_backend *h = (heap_backend *)b;
  heap_state *st = &h->states[state];
  size_t n = 0;
  for (int g = 0; g < h->ngroups; g++)
    n += st->groups[g].count;

  heap_cursor *c = calloc(1, sizeof *c);
  if (c == NULL)
    goto oom;
  c->base.backend = b;
  c->state = state;
  eddy_buf_init(&c->data);
  if (n > 0 && (c->rows = malloc(n * sizeof *c->rows)) == NULL)
    goto oom;
  for (int g = 0; g < h->ngroups; g++) {
    heap_item *r;
    for (size_t i = 0; (r = table_next(&st->groups[g], &i)) != NULL;) {
      cursor_row *cr = &c->rows[c->nrows++];
      cr->key_group = h->base.first_key_group + g;
      cr->key_len = r->ns_off;
      cr->ns_len = r->len - r->ns_off;
      cr->off = c->data.len;
      if (eddy_buf_append(&c->data, r->key, r->len) != EDDY_OK)
        goto oom;
      size_t start = c->data.len;
      if (st->kind == EDDY_STATE_MAP
              ? write_entries(&h->sort, &c->data, r) != EDDY_OK
              : eddy_buf_append(&c->data, r->u.bytes.data, r->u.bytes.len) != EDDY_OK)
        goto oom;
      cr->value_len = c->data.len - start;
    }
  }
  if (c->nrows > 1)
    qsort_r(c->rows, c->nrows, sizeof *c->rows, cmp_cursor_rows, c->data.data);
  *out = &c->base;
  return EDDY_OK;
oom:
  if (c != NULL)
    heap_cursor_close(&c->base);
  return eddy_seterr(&b->err, EDDY_ENOMEM,
                     "heap backend: out of memory opening a cursor on state '%s'",
                     b->states[state].name);
}

static int heap_cursor_next(eddy_backend_cursor *bc, eddy_row *row,
                            eddy_slice *value)
{
  heap_cursor *c = (heap_cursor *)bc;
  if (c->next == c->nrows)
    return EDDY_EEOF;
  const cursor_row *cr = &c->rows[c->next++];
  const unsigned char *p = c->data.data + cr->off;
  row->state = c->state;
  row->key_group = cr->key_group;
  row->key = p;
  row->key_len = cr->key_len;
  row->ns = p + cr->key_len;
  row->ns_len = cr->ns_len;
  value->data = p + cr->key_len + cr->ns_len;
  value->len = cr->value_len;
  return EDDY_OK;
}

/* ---- snapshots ---- */

static void heap_snapshot_free(heap_snapshot *s)
{
  free(s->is_map);
  free(s->rows);
  free(s->ends);
  eddy_buf_free(&s->out);
  free(s->sort.order);
  free(s);
}

/* The synchronous part of a checkpoint: the live rows' pointers, copied
 * from the slot arrays without a branch per slot, and a version (rule 1). */
static int heap_snapshot_open(eddy_backend *b, eddy_backend_snapshot **out)
{
  heap_backend *h = (heap_backend *)b;
  uint32_t ns = h->nstates;
  size_t ntables = (size_t)h->ngroups * ns, nrows = 0;
  for (uint32_t st = 0; st < ns; st++)
    for (int g = 0; g < h->ngroups; g++)
      nrows += h->states[st].groups[g].count;

  heap_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL)
    goto oom;
  /* one spare entry: the copy below stores a pointer, NULL or not, and
   * moves on only past one that is not */
  if ((s->rows = malloc((nrows + 1) * sizeof *s->rows)) == NULL ||
      (ns > 0 && ((s->is_map = malloc(ns)) == NULL ||
                  (s->ends = malloc(ntables * sizeof *s->ends)) == NULL)))
    goto oom;
  heap_item **next = s->rows;
  for (int g = 0; g < h->ngroups; g++)
    for (uint32_t st = 0; st < ns; st++) {
      const table *t = &h->states[st].groups[g];
      if (t->slots != NULL)
        for (size_t i = 0; i <= t->mask; i++) {
          heap_item *r = t->slots[i].item;
          *next = r;
          next += r != NULL;
        }
      s->ends[(size_t)g * ns + st] = (size_t)(next - s->rows);
    }
  for (uint32_t st = 0; st < ns; st++)
    s->is_map[st] = h->states[st].kind == EDDY_STATE_MAP;
  s->base.backend = b;
  s->first_key_group = h->base.first_key_group;
  s->nstates = ns;
  s->ntables = ntables;
  s->nrows = nrows;
  eddy_buf_init(&s->out);

  s->version = h->version++;
  s->older = h->newest;
  if (h->newest != NULL)
    h->newest->newer = s;
  h->newest = s;
  h->frozen = s->version;
  *out = &s->base;
  return EDDY_OK;
oom:
  if (s != NULL)
    heap_snapshot_free(s);
  return eddy_seterr(&b->err, EDDY_ENOMEM,
                     "heap backend: out of memory opening a snapshot");
}

/* The writer thread: reads the snapshot's own arrays and frozen rows only. */
static int heap_snapshot_next(eddy_backend_snapshot *bs, eddy_row *row,
                              eddy_slice *value)
{
  heap_snapshot *s = (heap_snapshot *)bs;
  while (s->table < s->ntables && s->next == s->ends[s->table])
    s->table++;
  if (s->table == s->ntables)
    return EDDY_EEOF;
  const heap_item *r = s->rows[s->next];
  /* Rows and payloads lie all over the heap, and waiting for each in turn
   * is most of the time a snapshot takes: ask for the row eight ahead, and
   * for the payload (or a map's slots) of the row four ahead, which was
   * asked for four calls ago. About 1.4 times the rows per second. */
  if (s->next + 8 < s->nrows)
    __builtin_prefetch(s->rows[s->next + 8]);
  if (s->next + 4 < s->nrows)
    __builtin_prefetch(s->rows[s->next + 4]->u.bytes.data);
  uint32_t state = (uint32_t)(s->table % s->nstates);
  row->state = state;
  row->key_group = s->first_key_group + (int)(s->table / s->nstates);
  row->key = r->key;
  row->key_len = r->ns_off;
  row->ns = r->key + r->ns_off;
  row->ns_len = r->len - r->ns_off;
  if (!s->is_map[state]) {
    value->data = r->u.bytes.data;
    value->len = r->u.bytes.len;
  } else {
    eddy_buf_reset(&s->out);
    if (write_entries(&s->sort, &s->out, r) != EDDY_OK)
      return eddy_seterr(&s->base.err, EDDY_ENOMEM,
                         "heap backend: out of memory reading a map row of a snapshot");
    value->data = s->out.data;
    value->len = s->out.len;
  }
  s->next++;
  return EDDY_OK;
}

static void heap_snapshot_close(eddy_backend_snapshot *bs)
{
  heap_snapshot *s = (heap_snapshot *)bs;
  heap_backend *h = (heap_backend *)bs->backend;
  heap_snapshot *older = s->older;
  if (older != NULL)
    older->newer = s->newer;
  if (s->newer != NULL)
    s->newer->older = older;
  else
    h->newest = older;
  h->frozen = h->newest != NULL ? h->newest->version : 0;

  /* rule 3: the rows s held pass to the next older snapshot or go */
  for (retired *c = s->retired, *next; c != NULL; c = next) {
    next = c->next;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < c->n; i++) {
      heap_item *r = c->rows[i];
      if (older != NULL && r->version <= older->version) {
        c->is_map[kept] = c->is_map[i];
        c->rows[kept++] = r;
      } else {
        free_item(r, c->is_map[i]);
      }
    }
    c->n = kept;
    if (kept == 0) {
      free(c);
    } else {
      c->next = older->retired;
      older->retired = c;
    }
  }
  heap_snapshot_free(s);
}

/* ---- lifetime ---- */

static void heap_destroy(eddy_backend *b)
{
  heap_backend *h = (heap_backend *)b;
  load_discard(h, 0); /* from a restore that was never done */
  free(h->load.rows);
  for (uint32_t s = 0; s < h->nstates; s++) {
    heap_state *st = &h->states[s];
    for (int g = 0; g < h->ngroups; g++) {
      heap_item *r;
      for (size_t i = 0; (r = table_next(&st->groups[g], &i)) != NULL;)
        free_item(r, st->kind == EDDY_STATE_MAP);
      free(st->groups[g].slots);
    }
    free(st->groups);
  }
  free(h->states);
  free(h->sort.order);
  eddy_buf_free(&h->rk);
  eddy_buf_free(&h->out);
  eddy_backend_base_free(b);
  free(h);
}

static const eddy_backend_ops heap_ops = {
  .version = EDDY_BACKEND_OPS_VERSION,
  .name = "heap",
  .add_state = heap_add_state,
  .get = heap_get,
  .put = heap_put,
  .clear = heap_clear,
  .list_append = heap_list_append,
  .list_get = heap_get,
  .list_set = heap_list_set,
  .map_get = heap_map_get,
  .map_put = heap_map_put,
  .map_remove = heap_map_remove,
  .map_entries = heap_map_entries,
  .cursor_open = heap_cursor_open,
  .cursor_next = heap_cursor_next,
  .cursor_close = heap_cursor_close,
  .snapshot_open = heap_snapshot_open,
  .snapshot_next = heap_snapshot_next,
  .snapshot_close = heap_snapshot_close,
  .restore_row = heap_restore_row,
  .restore_done = heap_restore_done,
  .destroy = heap_destroy,
};

int eddy_heap_backend_new(const eddy_backend_config *cfg, eddy_backend **out,
                          eddy_err *err)
{
  if (cfg == NULL || out == NULL)
    return eddy_seterr(err, EDDY_EINVAL,
                       "heap backend: no configuration or no result pointer");
  heap_backend *h = calloc(1, sizeof *h);
  if (h == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "heap backend: out of memory");
  int rc = eddy_backend_base_init(&h->base, &heap_ops, cfg, err);
  if (rc != EDDY_OK) {
    free(h);
    return rc;
  }
  h->ngroups = cfg->last_key_group - cfg->first_key_group + 1;
  h->version = 1;
  eddy_buf_init(&h->rk);
  eddy_buf_init(&h->out);
  *out = &h->base;
  return EDDY_OK;
}
