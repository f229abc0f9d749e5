/* The key groups of a timer queue by first timer: see timer_order.h. */
#include "state/timer_order.h"

#include <stdlib.h>

#include "util/err.h"

int eddy_timer_order_init(eddy_timer_order *o, int ngroups)
{
  o->n = 0;
  /* one block: the timestamps first, for their alignment */
  o->head = malloc((size_t)ngroups * (sizeof *o->head + sizeof *o->heap + sizeof *o->pos));
  if (o->head == NULL) {
    o->heap = o->pos = NULL;
    return EDDY_ENOMEM;
  }
  o->heap = (int *)(o->head + ngroups);
  o->pos = o->heap + ngroups;
  for (int g = 0; g < ngroups; g++)
    o->pos[g] = -1;
  return EDDY_OK;
}

void eddy_timer_order_free(eddy_timer_order *o)
{
  free(o->head);
  o->heap = o->pos = NULL;
  o->head = NULL;
  o->n = 0;
}

static int before(const eddy_timer_order *o, int a, int b)
{
  return o->head[a] != o->head[b] ? o->head[a] < o->head[b] : a < b;
}

static void place(eddy_timer_order *o, int i, int g)
{
  o->heap[i] = g;
  o->pos[g] = i;
}

static void sift_up(eddy_timer_order *o, int i)
{
  int g = o->heap[i];
  while (i > 0) {
    int parent = (i - 1) / 2;
    if (!before(o, g, o->heap[parent]))
      break;
    place(o, i, o->heap[parent]);
    i = parent;
  }
  place(o, i, g);
}

static void sift_down(eddy_timer_order *o, int i)
{
  int g = o->heap[i];
  for (;;) {
    int child = 2 * i + 1;
    if (child >= o->n)
      break;
    if (child + 1 < o->n && before(o, o->heap[child + 1], o->heap[child]))
      child++;
    if (!before(o, o->heap[child], g))
      break;
    place(o, i, o->heap[child]);
    i = child;
  }
  place(o, i, g);
}

/* The group at i moved either way: one of the sifts leaves it put. */
static void resift(eddy_timer_order *o, int i)
{
  int g = o->heap[i];
  sift_up(o, i);
  if (o->pos[g] == i)
    sift_down(o, i);
}

void eddy_timer_order_set(eddy_timer_order *o, int g, int64_t head)
{
  o->head[g] = head;
  if (o->pos[g] < 0)
    place(o, o->n++, g);
  resift(o, o->pos[g]);
}

void eddy_timer_order_remove(eddy_timer_order *o, int g)
{
  int i = o->pos[g];
  if (i < 0)
    return;
  o->pos[g] = -1;
  int last = o->heap[--o->n];
  if (i == o->n)
    return;
  place(o, i, last);
  resift(o, i);
}
