/*
 * luaopen_eddy_core: builds the eddy.core table from the binding files,
 * plus the key-group helpers, which are thin enough to live here.
 * Only src/lua/ touches lua_State; everything here wraps engine calls.
 */
#include "lua/core.h"

#include <sys/random.h>
#include <time.h>

#include "lua/binding.h"
#include "state/keygroup.h"

/* key_group(key [, max_parallelism]) -> key group */
static int l_key_group(lua_State *L)
{
  luaL_checkany(L, 1);
  lua_Integer maxp = luaL_optinteger(L, 2, 128);
  luaL_argcheck(L, maxp >= 1 && maxp <= EDDY_MAX_PARALLELISM_UPPER, 2,
                "max parallelism must be between 1 and 32768");
  if (lua_isnil(L, 1))
    return luaL_error(L, "eddy.key_group: a key must not be nil");
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  if (eddy_lua_encode(L, 1, c, "key", &err) != EDDY_OK)
    return luaL_error(L, "eddy.key_group: %s", err.msg);
  int kg;
  if (eddy_key_group(c->out.data, c->out.len, (int)maxp, &kg) != EDDY_OK)
    return luaL_error(L, "eddy.key_group: not a valid key");
  lua_pushinteger(L, kg);
  return 1;
}

static void check_parallelism(lua_State *L, lua_Integer maxp, lua_Integer p, const char *fn)
{
  const char *bad = (maxp > EDDY_MAX_PARALLELISM_UPPER || p > EDDY_MAX_PARALLELISM_UPPER)
                        ? "max parallelism must be between 1 and 32768"
                        : eddy_key_group_check((int)maxp, (int)p);
  if (bad != NULL)
    luaL_error(L, "%s: %s (max parallelism %d, parallelism %d)", fn, bad, (int)maxp, (int)p);
}

/* key_group_range(max_parallelism, parallelism, index) -> first, last */
static int l_key_group_range(lua_State *L)
{
  lua_Integer maxp = luaL_checkinteger(L, 1);
  lua_Integer p = luaL_checkinteger(L, 2);
  lua_Integer index = luaL_checkinteger(L, 3);
  check_parallelism(L, maxp, p, "eddy.key_group_range");
  if (index < 0 || index >= p)
    return luaL_error(L, "eddy.key_group_range: index must be in [0, %d), got %d",
                      (int)p, (int)index);
  int first, last;
  eddy_key_group_range((int)maxp, (int)p, (int)index, &first, &last);
  lua_pushinteger(L, first);
  lua_pushinteger(L, last);
  return 2;
}

/* operator_index(key_group, max_parallelism, parallelism) -> index */
static int l_operator_index(lua_State *L)
{
  lua_Integer kg = luaL_checkinteger(L, 1);
  lua_Integer maxp = luaL_checkinteger(L, 2);
  lua_Integer p = luaL_checkinteger(L, 3);
  check_parallelism(L, maxp, p, "eddy.operator_index");
  if (kg < 0 || kg >= maxp)
    return luaL_error(L, "eddy.operator_index: key group must be in [0, %d), got %d",
                      (int)maxp, (int)kg);
  lua_pushinteger(L, eddy_operator_index((int)kg, (int)maxp, (int)p));
  return 1;
}

/* default_max_parallelism(parallelism) -> Flink's default */
static int l_default_max_parallelism(lua_State *L)
{
  lua_Integer p = luaL_checkinteger(L, 1);
  int m = (p < 1 || p > EDDY_MAX_PARALLELISM_UPPER) ? -1
                                                    : eddy_default_max_parallelism((int)p);
  if (m < 0)
    return luaL_error(L, "parallelism must be between 1 and 32768, got %d", (int)p);
  lua_pushinteger(L, m);
  return 1;
}

/* now_ms() -> wall-clock milliseconds; monotonic_ms() for measuring */
static int l_now_ms(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  return 1;
}

static int l_monotonic_ms(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
  return 1;
}

/* sleep_ms(ms): a rate-limited source waits here */
static int l_sleep_ms(lua_State *L)
{
  lua_Number ms = luaL_checknumber(L, 1);
  if (ms <= 0)
    return 0;
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1e6);
  nanosleep(&ts, NULL); /* an interrupt ends the wait early, which is what we want */
  return 0;
}

/* random_hex(bytes) -> 2 * bytes hex digits from the kernel's generator:
 * job ids must differ between processes started at the same moment, which
 * Lua's own seed does not promise (under ASan it repeats). */
static int l_random_hex(lua_State *L)
{
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "between 1 and 64 bytes");
  unsigned char bytes[64];
  size_t got = 0;
  while (got < (size_t)n) {
    ssize_t r = getrandom(bytes + got, (size_t)n - got, 0);
    if (r < 0)
      return luaL_error(L, "cannot read random bytes");
    got += (size_t)r;
  }
  char hex[129];
  for (lua_Integer i = 0; i < n; i++)
    snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
  lua_pushlstring(L, hex, (size_t)(2 * n));
  return 1;
}

int luaopen_eddy_core(lua_State *L)
{
  static const luaL_Reg funcs[] = {
      {"default_max_parallelism", l_default_max_parallelism},
      {"key_group", l_key_group},
      {"key_group_range", l_key_group_range},
      {"monotonic_ms", l_monotonic_ms},
      {"now_ms", l_now_ms},
      {"operator_index", l_operator_index},
      {"random_hex", l_random_hex},
      {"sleep_ms", l_sleep_ms},
      {NULL, NULL}};
  luaL_checkversion(L);
  eddy_lua_push_binding(L);
  int ctx = lua_gettop(L);
  lua_newtable(L);
  eddy_lua_setfuncs(L, funcs, ctx);
  eddy_open_codec(L, ctx);
  eddy_open_state(L, ctx);
  eddy_open_job(L, ctx);
  eddy_open_io(L, ctx);
  eddy_open_checkpoint(L, ctx);
  eddy_open_snapshot_reader(L, ctx);
  eddy_open_control(L, ctx);
  return 1;
}
