/*
 * The timer service's public functions: argument checks shared by every
 * implementation, then the implementation's operation (timers_impl.h).
 * The implementations: timers_heap.c (in memory) and rocksdb_timers.c.
 */
#include "state/timers_impl.h"

#include <stdint.h>

#include "state/keygroup.h"

int eddy_timers_base_init(eddy_timers *t, const eddy_timers_ops *ops, int max_parallelism,
                          int first_key_group, int last_key_group, eddy_err *err)
{
  if (max_parallelism <= 0 || max_parallelism > EDDY_MAX_PARALLELISM_UPPER ||
      first_key_group < 0 || first_key_group > last_key_group ||
      last_key_group >= max_parallelism)
    return eddy_seterr(err, EDDY_EINVAL,
                       "timers: bad key-group range [%d, %d] for max parallelism %d",
                       first_key_group, last_key_group, max_parallelism);
  t->ops = ops;
  t->max_parallelism = max_parallelism;
  t->first = first_key_group;
  t->last = last_key_group;
  t->in_backend = 0;
  eddy_err_clear(&t->err);
  return EDDY_OK;
}

static int check_kind(eddy_timers *t, eddy_timer_kind kind)
{
  if (kind != EDDY_TIMER_EVENT && kind != EDDY_TIMER_PROCESSING)
    return eddy_seterr(&t->err, EDDY_EINVAL, "unknown timer kind %d", (int)kind);
  return EDDY_OK;
}

static int check_key_group(eddy_timers *t, int kg)
{
  if (kg < t->first || kg > t->last)
    return eddy_seterr(&t->err, EDDY_EINVAL,
                       "key group %d is outside this subtask's key-group range [%d, %d]",
                       kg, t->first, t->last);
  return EDDY_OK;
}

/* The checks shared by register and delete. */
static int check_timer(eddy_timers *t, eddy_timer_kind kind, const eddy_timer *tm,
                       const char *what)
{
  int rc = check_kind(t, kind);
  if (rc != EDDY_OK)
    return rc;
  if (tm == NULL)
    return eddy_seterr(&t->err, EDDY_EINVAL, "cannot %s a timer: no timer given", what);
  if (tm->key.len == 0 || tm->key.data == NULL)
    return eddy_seterr(&t->err, EDDY_EINVAL, "cannot %s a timer: it needs a non-empty key", what);
  if (tm->ns.len > 0 && tm->ns.data == NULL)
    return eddy_seterr(&t->err, EDDY_EINVAL, "cannot %s a timer: namespace length without bytes",
                       what);
  if (tm->key.len > UINT32_MAX || tm->ns.len > UINT32_MAX - tm->key.len)
    return eddy_seterr(&t->err, EDDY_ELIMIT, "cannot %s a timer: key and namespace too long",
                       what);
  if ((rc = check_key_group(t, tm->key_group)) != EDDY_OK)
    return eddy_err_prefix(&t->err, "cannot %s a timer", what);
  return EDDY_OK;
}

void eddy_timers_free(eddy_timers *t)
{
  if (t != NULL)
    t->ops->destroy(t);
}

const char *eddy_timers_errmsg(const eddy_timers *t) { return t->err.msg; }

int eddy_timers_in_backend(const eddy_timers *t) { return t != NULL && t->in_backend; }

int eddy_timers_register(eddy_timers *t, eddy_timer_kind kind, const eddy_timer *timer,
                         int *added)
{
  if (added != NULL)
    *added = 0;
  int rc = check_timer(t, kind, timer, "register");
  return rc != EDDY_OK ? rc : t->ops->add(t, kind, timer, added);
}

int eddy_timers_delete(eddy_timers *t, eddy_timer_kind kind, const eddy_timer *timer)
{
  int rc = check_timer(t, kind, timer, "delete");
  return rc != EDDY_OK ? rc : t->ops->remove(t, kind, timer);
}

int eddy_timers_peek(eddy_timers *t, eddy_timer_kind kind, eddy_timer *out)
{
  int rc = check_kind(t, kind);
  if (rc != EDDY_OK)
    return rc;
  if (out == NULL)
    return eddy_seterr(&t->err, EDDY_EINVAL, "peek: no result pointer");
  return t->ops->head(t, kind, out);
}

int eddy_timers_pop(eddy_timers *t, eddy_timer_kind kind, int64_t limit, eddy_timer *out)
{
  int rc = check_kind(t, kind);
  if (rc != EDDY_OK)
    return rc;
  if (out == NULL)
    return eddy_seterr(&t->err, EDDY_EINVAL, "pop: no result pointer");
  return t->ops->pop(t, kind, limit, out);
}

size_t eddy_timers_count(const eddy_timers *t, eddy_timer_kind kind)
{
  if (kind != EDDY_TIMER_EVENT && kind != EDDY_TIMER_PROCESSING)
    return 0;
  return t->ops->count((eddy_timers *)t, kind);
}

int eddy_timers_each(eddy_timers *t, eddy_timer_kind kind, int key_group,
                     int (*visit)(void *ud, const eddy_timer *timer), void *ud)
{
  int rc = check_kind(t, kind);
  if (rc != EDDY_OK)
    return rc;
  if (visit == NULL)
    return eddy_seterr(&t->err, EDDY_EINVAL, "each: no visit function");
  if (key_group != -1 && (rc = check_key_group(t, key_group)) != EDDY_OK)
    return rc;
  return t->ops->each(t, kind, key_group, visit, ud);
}

int eddy_timers_drop_key_group(eddy_timers *t, int key_group)
{
  int rc = check_key_group(t, key_group);
  return rc != EDDY_OK ? rc : t->ops->drop_key_group(t, key_group);
}
