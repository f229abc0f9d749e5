/*
 * Keyed state for Lua: the "eddy.Keyed" userdata wraps an engine keyed
 * context (state/keyed.h: a backend plus the current key), and one userdata
 * type per state kind wraps a registered state of it. A state handle keeps
 * its keyed context alive through its first uservalue, and reads and writes
 * the row of whatever key is current, as a Flink state handle does.
 *
 * Every method here runs inside user code (process functions, the harness),
 * so it may raise; the engine calls it makes copy what they keep, and no C
 * allocation is live when an error is raised.
 */
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "lua/state.h"
#include "state/keyed.h"
#include "state/keygroup.h"

#define KEYED_MT "eddy.Keyed"
#define CURSOR_MT "eddy.Cursor"

typedef struct lkeyed {
  eddy_keyed *k; /* NULL once closed */
} lkeyed;

typedef struct lstate {
  lkeyed *owner; /* kept alive by uservalue 1 */
  uint32_t id;
  eddy_state_kind kind;
  const char *name; /* owned by the backend's registry */
} lstate;

/* uservalues of a state handle */
enum { UV_OWNER = 1, UV_DESC = 2, UV_DEFAULT = 3, NUV = 3 };

static const char *const STATE_MT[] = {
    [EDDY_STATE_VALUE] = "eddy.ValueState",
    [EDDY_STATE_LIST] = "eddy.ListState",
    [EDDY_STATE_MAP] = "eddy.MapState",
    [EDDY_STATE_REDUCING] = "eddy.ReducingState",
    [EDDY_STATE_AGGREGATING] = "eddy.AggregatingState",
};

static lkeyed *check_keyed(lua_State *L, int idx)
{
  lkeyed *lk = luaL_checkudata(L, idx, KEYED_MT);
  luaL_argcheck(L, lk->k != NULL, idx, "keyed state is closed");
  return lk;
}

/* The state handle at idx. Every state method runs this on each call, so
 * it compares metatable pointers (kept in the binding context) instead of
 * looking the type name up in the registry as luaL_checkudata does. */
static lstate *check_state(lua_State *L, int idx, eddy_state_kind kind)
{
  lstate *s = lua_touserdata(L, idx);
  int ok = s != NULL && lua_getmetatable(L, idx);
  if (ok) {
    ok = lua_topointer(L, -1) == eddy_lua_binding(L)->state_mt[kind];
    lua_pop(L, 1);
  }
  if (!ok)
    luaL_typeerror(L, idx, STATE_MT[kind]);
  if (s->owner->k == NULL)
    luaL_error(L, "%s state '%s': its keyed state is closed",
               eddy_state_kind_name(s->kind), s->name);
  return s;
}

/* The row of the current key; raises if there is none. */
static eddy_row current_row(lua_State *L, lstate *s)
{
  if (!eddy_keyed_has_key(s->owner->k))
    luaL_error(L, "%s state '%s': no current key (keyed state is only "
                  "available while a record or timer of a key is processed)",
               eddy_state_kind_name(s->kind), s->name);
  return eddy_keyed_row(s->owner->k, s->id);
}

static eddy_backend *backend_of(lstate *s) { return eddy_keyed_backend(s->owner->k); }

static int raise_backend(lua_State *L, lstate *s)
{
  return luaL_error(L, "%s state '%s': %s", eddy_state_kind_name(s->kind), s->name,
                    eddy_backend_errmsg(backend_of(s)));
}

static int raise_codec(lua_State *L, lstate *s, const eddy_err *err)
{
  return luaL_error(L, "%s state '%s': %s", eddy_state_kind_name(s->kind), s->name,
                    err->msg);
}

/* Encodes the value at idx into the shared codec's fresh output. */
static eddy_codec *encode_fresh(lua_State *L, lstate *s, int idx, const char *root)
{
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  if (eddy_lua_encode(L, idx, c, root, &err) != EDDY_OK)
    raise_codec(L, s, &err);
  return c;
}

static void push_decoded(lua_State *L, lstate *s, eddy_slice v)
{
  eddy_err err;
  if (eddy_lua_decode(L, v.data, v.len, NULL, &err) != EDDY_OK)
    raise_codec(L, s, &err);
}

static void push_decoded_array(lua_State *L, lstate *s, eddy_slice v)
{
  eddy_err err;
  if (eddy_lua_decode_array(L, v.data, v.len, &err) != EDDY_OK)
    raise_codec(L, s, &err);
}

/* Reads a value-like row; pushes it and returns 1, or returns 0 if absent. */
static int get_value(lua_State *L, lstate *s)
{
  eddy_row row = current_row(L, s);
  eddy_slice v;
  int rc = eddy_backend_get(backend_of(s), &row, &v);
  if (rc == EDDY_ENOTFOUND)
    return 0;
  if (rc != EDDY_OK)
    raise_backend(L, s);
  push_decoded(L, s, v);
  return 1;
}

static void put_value(lua_State *L, lstate *s, int idx)
{
  eddy_codec *c = encode_fresh(L, s, idx, "value");
  eddy_row row = current_row(L, s);
  if (eddy_backend_put(backend_of(s), &row, c->out.data, c->out.len) != EDDY_OK)
    raise_backend(L, s);
}

static int clear_row(lua_State *L, lstate *s)
{
  eddy_row row = current_row(L, s);
  if (eddy_backend_clear(backend_of(s), &row) != EDDY_OK)
    raise_backend(L, s);
  return 0;
}

/* ---- value state ---- */

static int l_value_value(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_VALUE);
  if (get_value(L, s))
    return 1;
  /* A default is handed out as a fresh copy each time, so that changing
   * the returned table cannot change the default. */
  if (lua_getiuservalue(L, 1, UV_DEFAULT) == LUA_TSTRING) {
    size_t len;
    const char *bytes = lua_tolstring(L, -1, &len);
    eddy_slice v = {bytes, len};
    push_decoded(L, s, v);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int l_value_update(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_VALUE);
  luaL_checkany(L, 2);
  if (lua_isnil(L, 2))
    return clear_row(L, s);
  put_value(L, s, 2);
  return 0;
}

static int l_value_clear(lua_State *L)
{
  return clear_row(L, check_state(L, 1, EDDY_STATE_VALUE));
}

/* ---- list state ---- */

static int l_list_get(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_LIST);
  eddy_row row = current_row(L, s);
  eddy_slice v;
  int rc = eddy_backend_list_get(backend_of(s), &row, &v);
  if (rc == EDDY_ENOTFOUND) {
    lua_newtable(L);
    return 1;
  }
  if (rc != EDDY_OK)
    raise_backend(L, s);
  push_decoded_array(L, s, v);
  return 1;
}

static int l_list_add(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_LIST);
  if (lua_isnoneornil(L, 2))
    return luaL_error(L, "list state '%s': cannot add nil", s->name);
  eddy_codec *c = encode_fresh(L, s, 2, "value");
  eddy_row row = current_row(L, s);
  if (eddy_backend_list_append(backend_of(s), &row, c->out.data, c->out.len) != EDDY_OK)
    raise_backend(L, s);
  return 0;
}

/* Encodes every element of the array at idx back to back. A list holds no
 * nil (Flink refuses null elements), so the table must be a sequence. */
static eddy_codec *encode_elements(lua_State *L, lstate *s, int idx, const char *what)
{
  luaL_checktype(L, idx, LUA_TTABLE);
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  lua_Integer count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    if (k < 1 || k > n)
      luaL_error(L, "list state '%s': expected an array of values without holes (a list "
                    "cannot hold nil)", s->name);
    count++;
  }
  if (count != n)
    luaL_error(L, "list state '%s': expected an array of values without holes (a list "
                  "cannot hold nil)", s->name);
  eddy_buf_reset(&c->out);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    char root[32];
    snprintf(root, sizeof root, "%s[%lld]", what, (long long)i);
    int rc = eddy_lua_encode(L, -1, c, root, &err);
    lua_pop(L, 1);
    if (rc != EDDY_OK)
      raise_codec(L, s, &err);
  }
  return c;
}

static int l_list_add_all(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_LIST);
  eddy_codec *c = encode_elements(L, s, 2, "values");
  eddy_row row = current_row(L, s);
  if (eddy_backend_list_append(backend_of(s), &row, c->out.data, c->out.len) != EDDY_OK)
    raise_backend(L, s);
  return 0;
}

static int l_list_update(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_LIST);
  if (lua_isnoneornil(L, 2))
    return clear_row(L, s);
  eddy_codec *c = encode_elements(L, s, 2, "values");
  eddy_row row = current_row(L, s);
  if (eddy_backend_list_set(backend_of(s), &row, c->out.data, c->out.len) != EDDY_OK)
    raise_backend(L, s);
  return 0;
}

static int l_list_clear(lua_State *L)
{
  return clear_row(L, check_state(L, 1, EDDY_STATE_LIST));
}

/* ---- map state ---- */

/* Encodes the user key at idx; returns its length in c->out. */
static size_t encode_user_key(lua_State *L, lstate *s, int idx, eddy_codec **cp)
{
  if (lua_isnoneornil(L, idx))
    luaL_error(L, "map state '%s': a map key must not be nil", s->name);
  eddy_codec *c = encode_fresh(L, s, idx, "key");
  *cp = c;
  return c->out.len;
}

static int l_map_get(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  eddy_codec *c;
  size_t klen = encode_user_key(L, s, 2, &c);
  eddy_row row = current_row(L, s);
  eddy_slice v;
  int rc = eddy_backend_map_get(backend_of(s), &row, c->out.data, klen, &v);
  if (rc == EDDY_ENOTFOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != EDDY_OK)
    raise_backend(L, s);
  push_decoded(L, s, v);
  return 1;
}

static int l_map_contains(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  eddy_codec *c;
  size_t klen = encode_user_key(L, s, 2, &c);
  eddy_row row = current_row(L, s);
  eddy_slice v;
  int rc = eddy_backend_map_get(backend_of(s), &row, c->out.data, klen, &v);
  if (rc != EDDY_OK && rc != EDDY_ENOTFOUND)
    raise_backend(L, s);
  lua_pushboolean(L, rc == EDDY_OK);
  return 1;
}

static void map_put(lua_State *L, lstate *s, int kidx, int vidx)
{
  eddy_codec *c;
  size_t klen = encode_user_key(L, s, kidx, &c);
  eddy_row row = current_row(L, s);
  int rc;
  if (lua_isnil(L, vidx)) {
    /* as with a Lua table, storing nil removes the entry */
    rc = eddy_backend_map_remove(backend_of(s), &row, c->out.data, klen);
  } else {
    eddy_err err;
    if (eddy_lua_encode(L, vidx, c, "value", &err) != EDDY_OK)
      raise_codec(L, s, &err);
    rc = eddy_backend_map_put(backend_of(s), &row, c->out.data, klen,
                              c->out.data + klen, c->out.len - klen);
  }
  if (rc != EDDY_OK)
    raise_backend(L, s);
}

static int l_map_put(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  luaL_checkany(L, 3);
  map_put(L, s, 2, 3);
  return 0;
}

static int l_map_put_all(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    int top = lua_gettop(L);
    map_put(L, s, top - 1, top);
    lua_pop(L, 1);
  }
  return 0;
}

static int l_map_remove(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  eddy_codec *c;
  size_t klen = encode_user_key(L, s, 2, &c);
  eddy_row row = current_row(L, s);
  if (eddy_backend_map_remove(backend_of(s), &row, c->out.data, klen) != EDDY_OK)
    raise_backend(L, s);
  return 0;
}

/* Pushes two arrays: the keys and the values of the current map, sorted by
 * key bytes. */
static void push_entries(lua_State *L, lstate *s)
{
  eddy_row row = current_row(L, s);
  eddy_slice all;
  lua_newtable(L);
  lua_newtable(L);
  int rc = eddy_backend_map_entries(backend_of(s), &row, &all);
  if (rc == EDDY_ENOTFOUND)
    return;
  if (rc != EDDY_OK)
    raise_backend(L, s);
  const unsigned char *p = all.data;
  size_t left = all.len;
  eddy_err err;
  for (lua_Integer i = 1; left > 0; i++) {
    for (int side = 0; side < 2; side++) {
      size_t used;
      if (eddy_lua_decode(L, p, left, &used, &err) != EDDY_OK)
        raise_codec(L, s, &err);
      lua_rawseti(L, side == 0 ? -3 : -2, i);
      p += used;
      left -= used;
    }
  }
}

static int l_map_keys(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  push_entries(L, s);
  lua_pop(L, 1);
  return 1;
}

static int l_map_values(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  push_entries(L, s);
  return 1;
}

static int map_pairs_next(lua_State *L)
{
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(3)) + 1;
  if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL)
    return 1;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(3));
  lua_rawgeti(L, lua_upvalueindex(2), i);
  return 2;
}

/* for k, v in map:pairs() do ... end: iterates over the entries as they
 * were when the loop started, so the loop body may change the map. */
static int l_map_pairs(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  push_entries(L, s);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, map_pairs_next, 3);
  return 1;
}

static int l_map_is_empty(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_MAP);
  eddy_row row = current_row(L, s);
  eddy_slice all;
  int rc = eddy_backend_map_entries(backend_of(s), &row, &all);
  if (rc != EDDY_OK && rc != EDDY_ENOTFOUND)
    raise_backend(L, s);
  lua_pushboolean(L, rc == EDDY_ENOTFOUND);
  return 1;
}

static int l_map_clear(lua_State *L)
{
  return clear_row(L, check_state(L, 1, EDDY_STATE_MAP));
}

/* ---- reducing and aggregating state ---- */

/* Pushes field `name` of the state's descriptor (a function) or raises. */
static void push_desc_fn(lua_State *L, int self, lstate *s, const char *name)
{
  lua_getiuservalue(L, self, UV_DESC);
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION)
    luaL_error(L, "%s state '%s': no '%s' function", eddy_state_kind_name(s->kind),
               s->name, name);
  lua_remove(L, -2);
}

static int l_reducing_get(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_REDUCING);
  if (!get_value(L, s))
    lua_pushnil(L);
  return 1;
}

static int l_reducing_add(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_REDUCING);
  if (lua_isnoneornil(L, 2))
    return luaL_error(L, "reducing state '%s': cannot add nil", s->name);
  lua_settop(L, 2);
  if (!get_value(L, s)) {
    put_value(L, s, 2);
    return 0;
  }
  push_desc_fn(L, 1, s, "reduce");
  lua_insert(L, 3);      /* reduce, acc, value */
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1))
    return luaL_error(L, "reducing state '%s': the reduce function returned nil", s->name);
  put_value(L, s, -1);
  return 0;
}

static int l_reducing_clear(lua_State *L)
{
  return clear_row(L, check_state(L, 1, EDDY_STATE_REDUCING));
}

static int l_aggregating_get(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_AGGREGATING);
  if (!get_value(L, s)) {
    lua_pushnil(L);
    return 1;
  }
  lua_getiuservalue(L, 1, UV_DESC);
  if (lua_getfield(L, -1, "result") != LUA_TFUNCTION) {
    lua_pop(L, 2); /* no result function: the accumulator is the result */
    return 1;
  }
  lua_remove(L, -2);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}

static int l_aggregating_add(lua_State *L)
{
  lstate *s = check_state(L, 1, EDDY_STATE_AGGREGATING);
  if (lua_isnoneornil(L, 2))
    return luaL_error(L, "aggregating state '%s': cannot add nil", s->name);
  lua_settop(L, 2);
  if (!get_value(L, s)) {
    push_desc_fn(L, 1, s, "create");
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1))
      return luaL_error(L, "aggregating state '%s': create returned nil", s->name);
  }
  /* stack: self, value, acc */
  push_desc_fn(L, 1, s, "add");
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  /* add may change a table accumulator in place and return nothing; any
   * other accumulator must come back from add */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (!lua_istable(L, -1))
      return luaL_error(L, "aggregating state '%s': add returned nil (return the new "
                           "accumulator)", s->name);
  }
  put_value(L, s, -1);
  return 0;
}

static int l_aggregating_clear(lua_State *L)
{
  return clear_row(L, check_state(L, 1, EDDY_STATE_AGGREGATING));
}

/* A state handle of any kind, for the methods every kind shares. */
static lstate *check_any_state(lua_State *L, int idx)
{
  lstate *s = lua_touserdata(L, idx);
  if (s != NULL && lua_getmetatable(L, idx)) {
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    for (int kind = 0; kind < 5; kind++)
      if (mt == eddy_lua_binding(L)->state_mt[kind])
        return s;
  }
  luaL_typeerror(L, idx, "state handle");
  return NULL;
}

static int l_state_tostring(lua_State *L)
{
  lstate *s = check_any_state(L, 1);
  lua_pushfstring(L, "%s state '%s'", eddy_state_kind_name(s->kind), s->name);
  return 1;
}

static int l_state_name(lua_State *L)
{
  lua_pushstring(L, check_any_state(L, 1)->name);
  return 1;
}

/* ---- the keyed context ---- */

static int keyed_gc(lua_State *L)
{
  lkeyed *lk = luaL_checkudata(L, 1, KEYED_MT);
  eddy_keyed_free(lk->k);
  lk->k = NULL;
  return 0;
}

eddy_keyed **eddy_lua_push_keyed(lua_State *L)
{
  lkeyed *lk = lua_newuserdatauv(L, sizeof *lk, 0);
  lk->k = NULL;
  luaL_setmetatable(L, KEYED_MT);
  return &lk->k;
}

eddy_keyed *eddy_lua_check_keyed(lua_State *L, int idx)
{
  return check_keyed(L, idx)->k;
}

/* The integer option field name of the table at -1, or def when absent. */
static lua_Integer opt_option(lua_State *L, const char *name, lua_Integer def)
{
  lua_getfield(L, -1, name);
  lua_Integer v = luaL_opt(L, luaL_checkinteger, -1, def);
  lua_pop(L, 1);
  return v;
}

/* Reads a state_backend table (at the top) into rc. Its strings stay in
 * the table, which the caller keeps on the stack. */
static void read_rocksdb_config(lua_State *L, eddy_rocksdb_config *rc)
{
  static const char *const profiles[] = {"default", "spinning_disk_optimized",
                                         "spinning_disk_optimized_high_mem",
                                         "flash_ssd_optimized", NULL};
  static const char *const compressions[] = {"zstd", "lz4", "snappy", "none", NULL};
  static const char *const timer_places[] = {"rocksdb", "heap", NULL};
  lua_getfield(L, -1, "dir");
  rc->dir = luaL_optstring(L, -1, NULL);
  lua_pop(L, 1);
  lua_getfield(L, -1, "predefined");
  rc->predefined = (eddy_rocksdb_profile)luaL_checkoption(L, -1, "default", profiles);
  lua_pop(L, 1);
  lua_getfield(L, -1, "timers");
  rc->timers_in_memory = luaL_checkoption(L, -1, "rocksdb", timer_places) == 1;
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "options") == LUA_TTABLE) {
    rc->write_buffer_size = (uint64_t)opt_option(L, "write_buffer_size", 0);
    rc->max_write_buffer_number = (int)opt_option(L, "max_write_buffer_number", 0);
    rc->target_file_size_base = (uint64_t)opt_option(L, "target_file_size_base", 0);
    rc->block_size = (uint64_t)opt_option(L, "block_size", 0);
    rc->block_cache_size = (int64_t)opt_option(L, "block_cache_size", -1);
    rc->max_background_jobs = (int)opt_option(L, "max_background_jobs", 0);
    lua_getfield(L, -1, "bloom_filter_bits");
    rc->bloom_filter_bits = luaL_optnumber(L, -1, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "compression");
    if (!lua_isnil(L, -1))
      rc->compression = (eddy_rocksdb_compression)luaL_checkoption(L, -1, NULL, compressions);
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* options */
}

/* Flink takes the budget from the slot's managed memory; eddy has no task
 * manager to size, so a job without fixed_per_slot gets this much. */
#define DEFAULT_ROCKSDB_MEMORY ((uint64_t)256 << 20)

int eddy_lua_rocksdb_memory(lua_State *L, int idx, int sharers, eddy_rocksdb_memory **out,
                            eddy_err *err)
{
  *out = NULL;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx))
    return EDDY_OK;
  int top = lua_gettop(L);
  lua_getfield(L, idx, "type");
  int rocksdb = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "rocksdb") == 0;
  int rc = EDDY_OK;
  if (rocksdb && lua_getfield(L, idx, "memory") == LUA_TTABLE) {
    lua_getfield(L, -1, "managed");
    int managed = lua_isnil(L, -1) || lua_toboolean(L, -1); /* Flink's default: on */
    lua_getfield(L, -2, "fixed_per_slot");
    lua_Integer fixed = luaL_optinteger(L, -1, 0);
    lua_getfield(L, -3, "write_buffer_ratio");
    double ratio = luaL_optnumber(L, -1, 0.5);
    /* as in Flink, a fixed size bounds the memory even when not managed */
    if (managed || fixed > 0)
      rc = eddy_rocksdb_memory_new(fixed > 0 ? (uint64_t)fixed : DEFAULT_ROCKSDB_MEMORY, ratio,
                                   sharers, out, err);
  }
  lua_settop(L, top);
  return rc;
}

int eddy_lua_backend_new(lua_State *L, int idx, const eddy_backend_config *cfg,
                         const char *name, eddy_backend **out, eddy_err *err)
{
  return eddy_lua_backend_new_shared(L, idx, cfg, name, NULL, out, err);
}

int eddy_lua_backend_new_shared(lua_State *L, int idx, const eddy_backend_config *cfg,
                                const char *name, eddy_rocksdb_memory *memory,
                                eddy_backend **out, eddy_err *err)
{
  idx = lua_absindex(L, idx);
  const char *type = "heap";
  int top = lua_gettop(L);
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "type");
    type = luaL_optstring(L, -1, "heap");
  } else if (!lua_isnoneornil(L, idx)) {
    type = luaL_checkstring(L, idx);
  }
  int rc;
  if (strcmp(type, "heap") == 0) {
    rc = eddy_heap_backend_new(cfg, out, err);
  } else if (strcmp(type, "rocksdb") == 0) {
    eddy_rocksdb_config rcfg;
    eddy_rocksdb_config_init(&rcfg);
    rcfg.name = name;
    if (lua_istable(L, idx)) {
      lua_pushvalue(L, idx);
      read_rocksdb_config(L, &rcfg);
    }
    /* alone (a harness, a snapshot being read): a budget of its own */
    eddy_rocksdb_memory *own = NULL;
    rc = memory == NULL ? eddy_lua_rocksdb_memory(L, idx, 1, &own, err) : EDDY_OK;
    rcfg.memory = memory != NULL ? memory : own;
    if (rc == EDDY_OK)
      rc = eddy_rocksdb_backend_new(cfg, &rcfg, out, err);
    eddy_rocksdb_memory_release(own); /* the backend holds its own reference */
  } else {
    return luaL_error(L, "unknown state backend '%s' (expected \"heap\" or \"rocksdb\")", type);
  }
  lua_settop(L, top);
  return rc;
}

/* core.keyed_new{max_parallelism =, first =, last =, backend = "heap" |
 * "rocksdb" | state_backend table} -> Keyed, or nil and a message when a
 * RocksDB working folder cannot be had */
static int l_keyed_new(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  eddy_backend_config cfg;
  lua_getfield(L, 1, "max_parallelism");
  cfg.max_parallelism = (int)luaL_optinteger(L, -1, 128);
  lua_getfield(L, 1, "first");
  cfg.first_key_group = (int)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "last");
  cfg.last_key_group = (int)luaL_optinteger(L, -1, cfg.max_parallelism - 1);
  lua_pop(L, 3);
  if (lua_getfield(L, 1, "backend") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_getfield(L, 1, "state_backend");
  }
  /* the userdata exists before the engine object, so a raise cannot leak it */
  lkeyed *lk = lua_newuserdatauv(L, sizeof *lk, 0);
  lk->k = NULL;
  luaL_setmetatable(L, KEYED_MT);
  eddy_err err;
  eddy_backend *b;
  int rc = eddy_lua_backend_new(L, -2, &cfg, NULL, &b, &err);
  if (rc == EDDY_EIO || rc == EDDY_EAGAIN) {
    luaL_pushfail(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  if (rc != EDDY_OK)
    return eddy_lua_raise(L, &err);
  if (eddy_keyed_new(b, &lk->k, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 1;
}

/* k:set_key(key) -> key group */
static int l_keyed_set_key(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  luaL_checkany(L, 2);
  if (lua_isnil(L, 2))
    return luaL_error(L, "a key must not be nil");
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  if (eddy_lua_encode(L, 2, c, "key", &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  if (eddy_keyed_set_key(lk->k, c->out.data, c->out.len, -1) != EDDY_OK)
    return luaL_error(L, "%s", eddy_keyed_errmsg(lk->k));
  lua_pushinteger(L, eddy_keyed_key_group(lk->k));
  return 1;
}

static int l_keyed_clear_key(lua_State *L)
{
  eddy_keyed_clear_key(check_keyed(L, 1)->k);
  return 0;
}

static int l_keyed_key(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  if (!eddy_keyed_has_key(lk->k)) {
    lua_pushnil(L);
    return 1;
  }
  eddy_slice key = eddy_keyed_key(lk->k);
  eddy_err err;
  if (eddy_lua_decode(L, key.data, key.len, NULL, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 1;
}

static int l_keyed_key_group(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  if (eddy_keyed_has_key(lk->k))
    lua_pushinteger(L, eddy_keyed_key_group(lk->k));
  else
    lua_pushnil(L);
  return 1;
}

/* k:set_namespace(ns): state and timers of the current key are scoped to
 * ns from now on (nil: no namespace). Windows use the window. */
static int l_keyed_set_namespace(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  if (lua_isnoneornil(L, 2)) {
    eddy_keyed_set_namespace(lk->k, NULL, 0);
    return 0;
  }
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  if (eddy_lua_encode(L, 2, c, "namespace", &err) != EDDY_OK)
    return luaL_error(L, "%s", err.msg);
  if (eddy_keyed_set_namespace(lk->k, c->out.data, c->out.len) != EDDY_OK)
    return luaL_error(L, "%s", eddy_keyed_errmsg(lk->k));
  return 0;
}

static int l_keyed_namespace(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  eddy_row row = eddy_keyed_row(lk->k, 0);
  if (row.ns_len == 0) {
    lua_pushnil(L);
    return 1;
  }
  eddy_err err;
  if (eddy_lua_decode(L, row.ns, row.ns_len, NULL, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 1;
}

static eddy_timer_kind check_timer_kind(lua_State *L, int idx)
{
  static const char *const names[] = {"event", "processing", NULL};
  return luaL_checkoption(L, idx, NULL, names) == 0 ? EDDY_TIMER_EVENT : EDDY_TIMER_PROCESSING;
}

/* k:register_timer(kind, ts) and k:delete_timer(kind, ts): the timer of the
 * current key and namespace. */
static int l_keyed_register_timer(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  eddy_timer_kind kind = check_timer_kind(L, 2);
  if (eddy_keyed_register_timer(lk->k, kind, luaL_checkinteger(L, 3)) != EDDY_OK)
    return luaL_error(L, "%s", eddy_keyed_errmsg(lk->k));
  return 0;
}

static int l_keyed_delete_timer(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  eddy_timer_kind kind = check_timer_kind(L, 2);
  if (eddy_keyed_delete_timer(lk->k, kind, luaL_checkinteger(L, 3)) != EDDY_OK)
    return luaL_error(L, "%s", eddy_keyed_errmsg(lk->k));
  return 0;
}

/* k:pop_timer(kind, limit) -> ts, or nil when no timer is due at limit;
 * the popped timer's key and namespace become current. */
static int l_keyed_pop_timer(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  eddy_timer_kind kind = check_timer_kind(L, 2);
  int64_t ts;
  int rc = eddy_keyed_pop_timer(lk->k, kind, luaL_checkinteger(L, 3), &ts);
  if (rc == EDDY_ENOTFOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_keyed_errmsg(lk->k));
  lua_pushinteger(L, ts);
  return 1;
}

/* k:peek_timer(kind) -> the earliest pending timer's time, or nil */
static int l_keyed_peek_timer(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  eddy_timer t;
  if (eddy_timers_peek(eddy_keyed_timers(lk->k), check_timer_kind(L, 2), &t) != EDDY_OK)
    lua_pushnil(L);
  else
    lua_pushinteger(L, t.timestamp);
  return 1;
}

typedef struct timer_listing {
  lua_State *L;
  const char *kind;
  lua_Integer n;
  eddy_err err;
} timer_listing;

static int list_timer(void *ud, const eddy_timer *t)
{
  timer_listing *tl = ud;
  lua_State *L = tl->L;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, tl->kind);
  lua_setfield(L, -2, "kind");
  if (eddy_lua_decode(L, t->key.data, t->key.len, NULL, &tl->err) != EDDY_OK)
    return 1;
  lua_setfield(L, -2, "key");
  if (t->ns.len > 0) {
    if (eddy_lua_decode(L, t->ns.data, t->ns.len, NULL, &tl->err) != EDDY_OK)
      return 1;
    lua_setfield(L, -2, "namespace");
  }
  lua_pushinteger(L, t->timestamp);
  lua_setfield(L, -2, "ts");
  lua_pushinteger(L, t->key_group);
  lua_setfield(L, -2, "key_group");
  lua_rawseti(L, -2, ++tl->n);
  return 0;
}

/* k:timers() -> every pending timer, event time first, each kind in
 * firing order: { {kind =, key =, namespace =, ts =, key_group =}, ... } */
static int l_keyed_timers(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  lua_newtable(L);
  timer_listing tl = {L, "event", 0, {0, ""}};
  /* Decoding may raise only for out-of-memory, and the timer service holds
   * nothing that a raise would leak. */
  if (eddy_timers_each(eddy_keyed_timers(lk->k), EDDY_TIMER_EVENT, -1, list_timer, &tl) != 0)
    return eddy_lua_raise(L, &tl.err);
  tl.kind = "processing";
  if (eddy_timers_each(eddy_keyed_timers(lk->k), EDDY_TIMER_PROCESSING, -1, list_timer, &tl) != 0)
    return eddy_lua_raise(L, &tl.err);
  return 1;
}

static eddy_state_kind check_kind(lua_State *L, int idx)
{
  static const char *const names[] = {"value", "list", "map", "reducing", "aggregating", NULL};
  static const eddy_state_kind kinds[] = {EDDY_STATE_VALUE, EDDY_STATE_LIST, EDDY_STATE_MAP,
                                          EDDY_STATE_REDUCING, EDDY_STATE_AGGREGATING};
  return kinds[luaL_checkoption(L, idx, NULL, names)];
}

/* k:state(kind, name [, desc]) -> a state handle. desc holds the functions
 * of reducing and aggregating state and the default of value state. */
static int l_keyed_state(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  eddy_state_kind kind = check_kind(L, 2);
  const char *name = luaL_checkstring(L, 3);
  if (lua_isnoneornil(L, 4)) {
    lua_settop(L, 3);
    lua_newtable(L);
  }
  luaL_checktype(L, 4, LUA_TTABLE);
  eddy_backend *b = eddy_keyed_backend(lk->k);
  uint32_t id;
  if (eddy_backend_register(b, name, kind, &id) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_backend_errmsg(b));
  lstate *s = lua_newuserdatauv(L, sizeof *s, NUV);
  s->owner = lk;
  s->id = id;
  s->kind = kind;
  s->name = eddy_backend_state_name(b, id);
  luaL_setmetatable(L, STATE_MT[kind]);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, UV_OWNER);
  lua_pushvalue(L, 4);
  lua_setiuservalue(L, -2, UV_DESC);
  if (kind == EDDY_STATE_VALUE && lua_getfield(L, 4, "default") != LUA_TNIL) {
    eddy_codec *c = eddy_lua_codec(L);
    eddy_err err;
    eddy_buf_reset(&c->out);
    if (eddy_lua_encode(L, -1, c, "default", &err) != EDDY_OK)
      return eddy_lua_fail(L, "value state '%s': %s", name, err.msg);
    lua_pop(L, 1);
    lua_pushlstring(L, (const char *)c->out.data, c->out.len);
    lua_setiuservalue(L, -2, UV_DEFAULT);
  } else if (kind == EDDY_STATE_VALUE) {
    lua_pop(L, 1);
  }
  return 1;
}

/* k:states() -> { {name =, kind =}, ... } in registration order */
static int l_keyed_states(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  eddy_backend *b = eddy_keyed_backend(lk->k);
  uint32_t n = eddy_backend_state_count(b);
  lua_createtable(L, (int)n, 0);
  for (uint32_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, eddy_backend_state_name(b, i));
    lua_setfield(L, -2, "name");
    lua_pushstring(L, eddy_state_kind_name(eddy_backend_state_kind(b, i)));
    lua_setfield(L, -2, "kind");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

typedef struct lcursor {
  eddy_backend_cursor *c;
} lcursor;

static int cursor_gc(lua_State *L)
{
  lcursor *lc = luaL_checkudata(L, 1, CURSOR_MT);
  eddy_backend_cursor_close(lc->c);
  lc->c = NULL;
  return 0;
}

/* Pushes the decoded payload of a row of the given kind. */
static void push_row_value(lua_State *L, eddy_state_kind kind, eddy_slice v)
{
  eddy_err err;
  int rc;
  if (kind == EDDY_STATE_LIST) {
    rc = eddy_lua_decode_array(L, v.data, v.len, &err);
  } else if (kind == EDDY_STATE_MAP) {
    lua_newtable(L);
    const unsigned char *p = v.data;
    size_t left = v.len, used;
    rc = EDDY_OK;
    while (rc == EDDY_OK && left > 0) {
      if ((rc = eddy_lua_decode(L, p, left, &used, &err)) != EDDY_OK)
        break;
      p += used;
      left -= used;
      if ((rc = eddy_lua_decode(L, p, left, &used, &err)) != EDDY_OK) {
        lua_pop(L, 1);
        break;
      }
      p += used;
      left -= used;
      lua_rawset(L, -3);
    }
  } else {
    rc = eddy_lua_decode(L, v.data, v.len, NULL, &err);
  }
  if (rc != EDDY_OK)
    eddy_lua_raise(L, &err);
}

/* k:rows(name) -> { {key =, namespace =, key_group =, value =}, ... } in
 * backend order; an unknown name gives an empty array. */
static int l_keyed_rows(lua_State *L)
{
  lkeyed *lk = check_keyed(L, 1);
  const char *name = luaL_checkstring(L, 2);
  eddy_backend *b = eddy_keyed_backend(lk->k);
  lua_newtable(L);
  uint32_t n = eddy_backend_state_count(b), id;
  for (id = 0; id < n; id++)
    if (strcmp(eddy_backend_state_name(b, id), name) == 0)
      break;
  if (id == n)
    return 1;
  eddy_state_kind kind = eddy_backend_state_kind(b, id);
  lcursor *lc = lua_newuserdatauv(L, sizeof *lc, 0);
  lc->c = NULL;
  luaL_setmetatable(L, CURSOR_MT);
  if (eddy_backend_cursor_open(b, id, &lc->c) != EDDY_OK)
    return luaL_error(L, "%s", eddy_backend_errmsg(b));
  eddy_err err;
  eddy_row row;
  eddy_slice v;
  int rc;
  for (lua_Integer i = 1; (rc = eddy_backend_cursor_next(lc->c, &row, &v)) == EDDY_OK; i++) {
    lua_createtable(L, 0, 4);
    if (eddy_lua_decode(L, row.key, row.key_len, NULL, &err) != EDDY_OK)
      return eddy_lua_raise(L, &err);
    lua_setfield(L, -2, "key");
    if (row.ns_len > 0) {
      if (eddy_lua_decode(L, row.ns, row.ns_len, NULL, &err) != EDDY_OK)
        return eddy_lua_raise(L, &err);
      lua_setfield(L, -2, "namespace");
    }
    lua_pushinteger(L, row.key_group);
    lua_setfield(L, -2, "key_group");
    push_row_value(L, kind, v);
    lua_setfield(L, -2, "value");
    lua_rawseti(L, -3, i);
  }
  if (rc != EDDY_EEOF)
    return luaL_error(L, "%s", eddy_backend_errmsg(b));
  eddy_backend_cursor_close(lc->c);
  lc->c = NULL;
  lua_pop(L, 1);
  return 1;
}

static int l_keyed_close(lua_State *L)
{
  lkeyed *lk = luaL_checkudata(L, 1, KEYED_MT);
  eddy_keyed_free(lk->k);
  lk->k = NULL;
  return 0;
}

static int l_keyed_tostring(lua_State *L)
{
  lkeyed *lk = luaL_checkudata(L, 1, KEYED_MT);
  if (lk->k == NULL)
    lua_pushliteral(L, "eddy.Keyed (closed)");
  else
    lua_pushfstring(L, "eddy.Keyed (%s backend)", eddy_backend_name(eddy_keyed_backend(lk->k)));
  return 1;
}

/* ---- registration ---- */

static void new_type(lua_State *L, const char *mt, const luaL_Reg *methods,
                     const luaL_Reg *metamethods, int ctx)
{
  luaL_newmetatable(L, mt);
  eddy_lua_setfuncs(L, metamethods, ctx);
  lua_newtable(L);
  eddy_lua_setfuncs(L, methods, ctx);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void eddy_open_state(lua_State *L, int ctx)
{
  static const luaL_Reg state_meta[] = {{"__tostring", l_state_tostring}, {NULL, NULL}};
  static const luaL_Reg value_methods[] = {
      {"clear", l_value_clear}, {"name", l_state_name},
      {"update", l_value_update}, {"value", l_value_value}, {NULL, NULL}};
  static const luaL_Reg list_methods[] = {
      {"add", l_list_add}, {"add_all", l_list_add_all}, {"clear", l_list_clear},
      {"get", l_list_get}, {"name", l_state_name}, {"update", l_list_update},
      {NULL, NULL}};
  static const luaL_Reg map_methods[] = {
      {"clear", l_map_clear}, {"contains", l_map_contains}, {"get", l_map_get},
      {"is_empty", l_map_is_empty}, {"keys", l_map_keys}, {"name", l_state_name},
      {"pairs", l_map_pairs}, {"put", l_map_put}, {"put_all", l_map_put_all},
      {"remove", l_map_remove}, {"values", l_map_values}, {NULL, NULL}};
  static const luaL_Reg reducing_methods[] = {
      {"add", l_reducing_add}, {"clear", l_reducing_clear}, {"get", l_reducing_get},
      {"name", l_state_name}, {NULL, NULL}};
  static const luaL_Reg aggregating_methods[] = {
      {"add", l_aggregating_add}, {"clear", l_aggregating_clear},
      {"get", l_aggregating_get}, {"name", l_state_name}, {NULL, NULL}};
  static const luaL_Reg keyed_meta[] = {
      {"__close", keyed_gc}, {"__gc", keyed_gc}, {"__tostring", l_keyed_tostring},
      {NULL, NULL}};
  static const luaL_Reg keyed_methods[] = {
      {"clear_key", l_keyed_clear_key}, {"close", l_keyed_close},
      {"delete_timer", l_keyed_delete_timer}, {"key", l_keyed_key},
      {"key_group", l_keyed_key_group}, {"namespace", l_keyed_namespace},
      {"peek_timer", l_keyed_peek_timer}, {"pop_timer", l_keyed_pop_timer},
      {"register_timer", l_keyed_register_timer}, {"rows", l_keyed_rows},
      {"set_key", l_keyed_set_key}, {"set_namespace", l_keyed_set_namespace},
      {"state", l_keyed_state}, {"states", l_keyed_states}, {"timers", l_keyed_timers},
      {NULL, NULL}};
  static const luaL_Reg cursor_meta[] = {{"__close", cursor_gc}, {"__gc", cursor_gc}, {NULL, NULL}};
  static const luaL_Reg no_methods[] = {{NULL, NULL}};

  new_type(L, STATE_MT[EDDY_STATE_VALUE], value_methods, state_meta, ctx);
  new_type(L, STATE_MT[EDDY_STATE_LIST], list_methods, state_meta, ctx);
  new_type(L, STATE_MT[EDDY_STATE_MAP], map_methods, state_meta, ctx);
  new_type(L, STATE_MT[EDDY_STATE_REDUCING], reducing_methods, state_meta, ctx);
  new_type(L, STATE_MT[EDDY_STATE_AGGREGATING], aggregating_methods, state_meta, ctx);
  new_type(L, KEYED_MT, keyed_methods, keyed_meta, ctx);
  new_type(L, CURSOR_MT, no_methods, cursor_meta, ctx);
  eddy_binding *binding = lua_touserdata(L, ctx);
  for (int kind = 0; kind < 5; kind++) {
    luaL_getmetatable(L, STATE_MT[kind]);
    binding->state_mt[kind] = lua_topointer(L, -1);
    lua_pop(L, 1);
  }

  static const luaL_Reg funcs[] = {{"keyed_new", l_keyed_new}, {NULL, NULL}};
  eddy_lua_setfuncs(L, funcs, ctx);
}
