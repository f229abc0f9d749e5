/*
 * Keyed context: see keyed.h. The key and namespace are copied into buffers
 * owned here, so a row stays valid while the frame that carried the key is
 * long gone.
 */
#include "state/keyed.h"

#include <stdlib.h>

#include "state/keygroup.h"

struct eddy_keyed {
  eddy_backend *backend;
  eddy_timers *timers;
  int own_timers; /* in memory, ours; else the backend's */
  eddy_buf key;
  eddy_buf ns;
  int key_group; /* -1 when there is no current key */
  int max_parallelism;
  int first_key_group;
  int last_key_group;
  eddy_err err;
};

int eddy_keyed_new(eddy_backend *backend, eddy_keyed **out, eddy_err *err)
{
  eddy_keyed *k = calloc(1, sizeof *k);
  if (k == NULL) {
    eddy_backend_destroy(backend);
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory creating keyed state");
  }
  k->backend = backend;
  k->key_group = -1;
  eddy_backend_key_groups(backend, &k->max_parallelism, &k->first_key_group,
                          &k->last_key_group);
  k->timers = eddy_backend_timers(backend);
  k->own_timers = k->timers == NULL;
  int rc = k->own_timers ? eddy_timers_new(k->max_parallelism, k->first_key_group,
                                           k->last_key_group, &k->timers, err)
                         : EDDY_OK;
  if (rc != EDDY_OK) {
    eddy_keyed_free(k);
    return rc;
  }
  *out = k;
  return EDDY_OK;
}

void eddy_keyed_free(eddy_keyed *k)
{
  if (k == NULL)
    return;
  if (k->own_timers)
    eddy_timers_free(k->timers);
  eddy_backend_destroy(k->backend);
  eddy_buf_free(&k->key);
  eddy_buf_free(&k->ns);
  free(k);
}

eddy_backend *eddy_keyed_backend(eddy_keyed *k) { return k->backend; }

int eddy_keyed_set_key(eddy_keyed *k, const void *key, size_t len, int key_group)
{
  int rc;
  if (key_group < 0) {
    rc = eddy_key_group(key, len, k->max_parallelism, &key_group);
    if (rc == EDDY_EINVAL)
      return eddy_seterr(&k->err, rc, "a key must not be nil");
    if (rc != EDDY_OK)
      return eddy_seterr(&k->err, rc, "a key must be one complete value");
  }
  if (key_group < k->first_key_group || key_group > k->last_key_group)
    return eddy_seterr(&k->err, EDDY_EINVAL,
                       "key group %d is not in this subtask's range [%d, %d]",
                       key_group, k->first_key_group, k->last_key_group);
  eddy_buf_reset(&k->key);
  if ((rc = eddy_buf_append(&k->key, key, len)) != EDDY_OK) {
    k->key_group = -1;
    return eddy_seterr(&k->err, rc, "out of memory setting the current key");
  }
  k->key_group = key_group;
  eddy_buf_reset(&k->ns);
  return EDDY_OK;
}

void eddy_keyed_clear_key(eddy_keyed *k)
{
  k->key_group = -1;
  eddy_buf_reset(&k->key);
  eddy_buf_reset(&k->ns);
}

int eddy_keyed_has_key(const eddy_keyed *k) { return k->key_group >= 0; }

eddy_slice eddy_keyed_key(const eddy_keyed *k)
{
  eddy_slice s = {k->key.data, k->key.len};
  return s;
}

int eddy_keyed_key_group(const eddy_keyed *k) { return k->key_group; }

int eddy_keyed_set_namespace(eddy_keyed *k, const void *ns, size_t len)
{
  eddy_buf_reset(&k->ns);
  int rc = eddy_buf_append(&k->ns, ns, len);
  if (rc != EDDY_OK)
    return eddy_seterr(&k->err, rc, "out of memory setting the namespace");
  return EDDY_OK;
}

eddy_row eddy_keyed_row(const eddy_keyed *k, uint32_t state)
{
  eddy_row row = {state, k->key_group, k->key.data, k->key.len,
                  k->ns.data, k->ns.len};
  return row;
}

eddy_timers *eddy_keyed_timers(eddy_keyed *k) { return k->timers; }

static int current_timer(eddy_keyed *k, int64_t ts, eddy_timer *t)
{
  if (k->key_group < 0)
    return eddy_seterr(&k->err, EDDY_EINVAL,
                       "no current key (timers are only available while a record or "
                       "timer of a key is processed)");
  t->timestamp = ts;
  t->key_group = k->key_group;
  t->key.data = k->key.data;
  t->key.len = k->key.len;
  t->ns.data = k->ns.data;
  t->ns.len = k->ns.len;
  return EDDY_OK;
}

int eddy_keyed_register_timer(eddy_keyed *k, eddy_timer_kind kind, int64_t ts)
{
  eddy_timer t;
  int rc = current_timer(k, ts, &t);
  if (rc == EDDY_OK && (rc = eddy_timers_register(k->timers, kind, &t, NULL)) != EDDY_OK)
    eddy_seterr(&k->err, rc, "%s", eddy_timers_errmsg(k->timers));
  return rc;
}

int eddy_keyed_delete_timer(eddy_keyed *k, eddy_timer_kind kind, int64_t ts)
{
  eddy_timer t;
  int rc = current_timer(k, ts, &t);
  if (rc == EDDY_OK && (rc = eddy_timers_delete(k->timers, kind, &t)) != EDDY_OK)
    eddy_seterr(&k->err, rc, "%s", eddy_timers_errmsg(k->timers));
  return rc;
}

int eddy_keyed_pop_timer(eddy_keyed *k, eddy_timer_kind kind, int64_t limit, int64_t *ts)
{
  eddy_timer t;
  int rc = eddy_timers_pop(k->timers, kind, limit, &t);
  if (rc != EDDY_OK)
    return rc;
  /* the popped bytes live until the next timer call: copy them now */
  if ((rc = eddy_keyed_set_key(k, t.key.data, t.key.len, t.key_group)) != EDDY_OK ||
      (rc = eddy_keyed_set_namespace(k, t.ns.data, t.ns.len)) != EDDY_OK)
    return rc;
  *ts = t.timestamp;
  return EDDY_OK;
}

const char *eddy_keyed_errmsg(const eddy_keyed *k)
{
  return k->err.msg;
}
