/*
 * The public face of every backend: argument checks, the state registry,
 * and forwarding to the implementation's operation table. Keeping the
 * checks here means each backend trusts its inputs and stays about storage.
 */
#include "state/backend_impl.h"

#include <stdlib.h>
#include <string.h>

#include "util/msgpack.h"

const char *eddy_state_kind_name(eddy_state_kind kind)
{
  switch (kind) {
  case EDDY_STATE_VALUE: return "value";
  case EDDY_STATE_LIST: return "list";
  case EDDY_STATE_MAP: return "map";
  case EDDY_STATE_REDUCING: return "reducing";
  case EDDY_STATE_AGGREGATING: return "aggregating";
  }
  return "unknown";
}

int eddy_backend_base_init(eddy_backend *b, const eddy_backend_ops *ops,
                           const eddy_backend_config *cfg, eddy_err *err)
{
  memset(b, 0, sizeof *b);
  if (ops->version != EDDY_BACKEND_OPS_VERSION)
    return eddy_seterr(err, EDDY_EINVAL, "%s backend: interface version %d, expected %d",
                       ops->name, ops->version, EDDY_BACKEND_OPS_VERSION);
  if (cfg->max_parallelism <= 0 || cfg->first_key_group < 0 ||
      cfg->first_key_group > cfg->last_key_group ||
      cfg->last_key_group >= cfg->max_parallelism)
    return eddy_seterr(err, EDDY_EINVAL,
                       "%s backend: bad key-group range [%d, %d] for max parallelism %d",
                       ops->name, cfg->first_key_group, cfg->last_key_group,
                       cfg->max_parallelism);
  b->ops = ops;
  b->max_parallelism = cfg->max_parallelism;
  b->first_key_group = cfg->first_key_group;
  b->last_key_group = cfg->last_key_group;
  return EDDY_OK;
}

void eddy_backend_base_free(eddy_backend *b)
{
  for (uint32_t i = 0; i < b->nstates; i++)
    free(b->states[i].name);
  free(b->states);
  b->states = NULL;
  b->nstates = b->states_cap = 0;
}

void eddy_backend_destroy(eddy_backend *b)
{
  if (b != NULL)
    b->ops->destroy(b);
}

const char *eddy_backend_errmsg(const eddy_backend *b) { return b->err.msg; }

const char *eddy_backend_name(const eddy_backend *b) { return b->ops->name; }

void eddy_backend_key_groups(const eddy_backend *b, int *max_parallelism,
                             int *first, int *last)
{
  *max_parallelism = b->max_parallelism;
  *first = b->first_key_group;
  *last = b->last_key_group;
}

int eddy_backend_register(eddy_backend *b, const char *name,
                          eddy_state_kind kind, uint32_t *id)
{
  if (name == NULL || name[0] == '\0')
    return eddy_seterr(&b->err, EDDY_EINVAL, "a state needs a non-empty name");
  if (strncmp(name, EDDY_RESERVED_STATE_PREFIX, strlen(EDDY_RESERVED_STATE_PREFIX)) == 0)
    return eddy_seterr(&b->err, EDDY_EINVAL,
                       "state '%s': names starting with '" EDDY_RESERVED_STATE_PREFIX
                       "' are kept for timers", name);
  for (uint32_t i = 0; i < b->nstates; i++) {
    if (strcmp(b->states[i].name, name) != 0)
      continue;
    if (b->states[i].kind != kind)
      return eddy_seterr(&b->err, EDDY_EINVAL,
                         "state '%s' is a %s state, not a %s state", name,
                         eddy_state_kind_name(b->states[i].kind),
                         eddy_state_kind_name(kind));
    *id = i;
    return EDDY_OK;
  }
  if (b->nstates == b->states_cap) {
    uint32_t cap = b->states_cap ? 2 * b->states_cap : 8;
    eddy_state_info *s = realloc(b->states, cap * sizeof *s);
    if (s == NULL)
      return eddy_seterr(&b->err, EDDY_ENOMEM, "out of memory registering state '%s'", name);
    b->states = s;
    b->states_cap = cap;
  }
  char *copy = strdup(name);
  if (copy == NULL)
    return eddy_seterr(&b->err, EDDY_ENOMEM, "out of memory registering state '%s'", name);
  uint32_t next = b->nstates;
  int rc = b->ops->add_state(b, next, copy, kind);
  if (rc != EDDY_OK) {
    free(copy);
    return rc;
  }
  b->states[next].name = copy;
  b->states[next].kind = kind;
  b->nstates = next + 1;
  *id = next;
  return EDDY_OK;
}

uint32_t eddy_backend_state_count(const eddy_backend *b) { return b->nstates; }

const char *eddy_backend_state_name(const eddy_backend *b, uint32_t id)
{
  return id < b->nstates ? b->states[id].name : NULL;
}

eddy_state_kind eddy_backend_state_kind(const eddy_backend *b, uint32_t id)
{
  return id < b->nstates ? b->states[id].kind : EDDY_STATE_VALUE;
}

/* Rejects rows the implementations must never see. */
static int check_row(eddy_backend *b, const eddy_row *row, int want_map)
{
  if (row->state >= b->nstates)
    return eddy_seterr(&b->err, EDDY_EINVAL, "unknown state id %u", row->state);
  if (row->key_group < b->first_key_group || row->key_group > b->last_key_group)
    return eddy_seterr(&b->err, EDDY_EINVAL,
                       "key group %d is outside this backend's range [%d, %d]",
                       row->key_group, b->first_key_group, b->last_key_group);
  if (row->key == NULL || row->key_len == 0)
    return eddy_seterr(&b->err, EDDY_EINVAL, "a state access needs a current key");
  if (row->ns_len > 0 && row->ns == NULL)
    return eddy_seterr(&b->err, EDDY_EINVAL, "namespace length without bytes");
  eddy_state_kind kind = b->states[row->state].kind;
  int is_map = kind == EDDY_STATE_MAP, is_list = kind == EDDY_STATE_LIST;
  if ((want_map == 1 && !is_map) || (want_map == 2 && !is_list) ||
      (want_map == 0 && (is_map || is_list)))
    return eddy_seterr(&b->err, EDDY_EINVAL, "state '%s' is a %s state, not a %s state",
                       b->states[row->state].name, eddy_state_kind_name(kind),
                       want_map == 1 ? "map" : want_map == 2 ? "list" : "value");
  return EDDY_OK;
}

enum { ANY = -1, VALUELIKE = 0, MAP = 1, LIST = 2 };

int eddy_backend_get(eddy_backend *b, const eddy_row *row, eddy_slice *value)
{
  int rc = check_row(b, row, VALUELIKE);
  return rc ? rc : b->ops->get(b, row, value);
}

int eddy_backend_put(eddy_backend *b, const eddy_row *row, const void *value,
                     size_t len)
{
  int rc = check_row(b, row, VALUELIKE);
  if (rc)
    return rc;
  if (len == 0)
    return eddy_seterr(&b->err, EDDY_EINVAL, "cannot store an empty value");
  return b->ops->put(b, row, value, len);
}

int eddy_backend_clear(eddy_backend *b, const eddy_row *row)
{
  int rc = check_row(b, row, ANY);
  return rc ? rc : b->ops->clear(b, row);
}

int eddy_backend_list_append(eddy_backend *b, const eddy_row *row,
                             const void *elems, size_t len)
{
  int rc = check_row(b, row, LIST);
  if (rc)
    return rc;
  return len == 0 ? EDDY_OK : b->ops->list_append(b, row, elems, len);
}

int eddy_backend_list_get(eddy_backend *b, const eddy_row *row, eddy_slice *elems)
{
  int rc = check_row(b, row, LIST);
  return rc ? rc : b->ops->list_get(b, row, elems);
}

int eddy_backend_list_set(eddy_backend *b, const eddy_row *row,
                          const void *elems, size_t len)
{
  int rc = check_row(b, row, LIST);
  return rc ? rc : b->ops->list_set(b, row, elems, len);
}

int eddy_backend_map_get(eddy_backend *b, const eddy_row *row, const void *ukey,
                         size_t ukey_len, eddy_slice *value)
{
  int rc = check_row(b, row, MAP);
  if (rc)
    return rc;
  if (ukey_len == 0)
    return eddy_seterr(&b->err, EDDY_EINVAL, "empty map key");
  return b->ops->map_get(b, row, ukey, ukey_len, value);
}

int eddy_backend_map_put(eddy_backend *b, const eddy_row *row, const void *ukey,
                         size_t ukey_len, const void *value, size_t len)
{
  int rc = check_row(b, row, MAP);
  if (rc)
    return rc;
  if (ukey_len == 0 || len == 0)
    return eddy_seterr(&b->err, EDDY_EINVAL, "empty map key or value");
  return b->ops->map_put(b, row, ukey, ukey_len, value, len);
}

int eddy_backend_map_remove(eddy_backend *b, const eddy_row *row,
                            const void *ukey, size_t ukey_len)
{
  int rc = check_row(b, row, MAP);
  if (rc)
    return rc;
  if (ukey_len == 0)
    return eddy_seterr(&b->err, EDDY_EINVAL, "empty map key");
  return b->ops->map_remove(b, row, ukey, ukey_len);
}

int eddy_backend_map_entries(eddy_backend *b, const eddy_row *row,
                             eddy_slice *entries)
{
  int rc = check_row(b, row, MAP);
  return rc ? rc : b->ops->map_entries(b, row, entries);
}

int eddy_backend_cursor_open(eddy_backend *b, uint32_t state,
                             eddy_backend_cursor **out)
{
  if (state >= b->nstates)
    return eddy_seterr(&b->err, EDDY_EINVAL, "unknown state id %u", state);
  return b->ops->cursor_open(b, state, out);
}

int eddy_backend_cursor_next(eddy_backend_cursor *c, eddy_row *row,
                             eddy_slice *value)
{
  return c->backend->ops->cursor_next(c, row, value);
}

void eddy_backend_cursor_close(eddy_backend_cursor *c)
{
  if (c != NULL)
    c->backend->ops->cursor_close(c);
}

int eddy_backend_snapshot_open(eddy_backend *b, eddy_backend_snapshot **out)
{
  if (out == NULL)
    return eddy_seterr(&b->err, EDDY_EINVAL, "snapshot: no result pointer");
  *out = NULL;
  return b->ops->snapshot_open(b, out);
}

int eddy_backend_snapshot_next(eddy_backend_snapshot *s, eddy_row *row,
                               eddy_slice *value)
{
  return s->backend->ops->snapshot_next(s, row, value);
}

const char *eddy_backend_snapshot_errmsg(const eddy_backend_snapshot *s)
{
  return s->err.msg;
}

void eddy_backend_snapshot_close(eddy_backend_snapshot *s)
{
  if (s != NULL)
    s->backend->ops->snapshot_close(s);
}

int eddy_backend_restore_row(eddy_backend *b, const eddy_row *row,
                             const void *payload, size_t len)
{
  int rc = check_row(b, row, ANY);
  if (rc)
    return rc;
  if (payload == NULL || len == 0)
    return eddy_seterr(&b->err, EDDY_EINVAL, "cannot restore an empty row");
  if (b->states[row->state].kind == EDDY_STATE_MAP) {
    const unsigned char *p = payload;
    for (size_t done = 0, kl, vl; done < len; done += kl + vl)
      if (eddy_mp_value_len(p + done, len - done, &kl) != EDDY_OK ||
          eddy_mp_value_len(p + done + kl, len - done - kl, &vl) != EDDY_OK)
        return eddy_seterr(&b->err, EDDY_EINVAL,
                           "state '%s': a map row's payload is not whole entries at byte %zu",
                           b->states[row->state].name, done);
  }
  return b->ops->restore_row(b, row, payload, len);
}

int eddy_backend_restore_done(eddy_backend *b)
{
  return b->ops->restore_done(b);
}

struct eddy_timers *eddy_backend_timers(eddy_backend *b)
{
  return b->ops->timers != NULL ? b->ops->timers(b) : NULL;
}

int eddy_backend_state_metrics(eddy_backend *b, uint32_t state, eddy_state_metrics *m)
{
  m->estimated_keys = m->live_sst_bytes = m->memtable_bytes = m->block_cache_bytes = -1;
  if (state >= b->nstates)
    return eddy_seterr(&b->err, EDDY_EINVAL, "no state %u", (unsigned)state);
  if (b->ops->state_metrics == NULL)
    return EDDY_EUNSUPPORTED;
  return b->ops->state_metrics(b, state, m);
}
