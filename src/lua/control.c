/*
 * The binding of job control (runtime/control.h): the control socket a
 * running job serves, and what the job-control commands (lua/eddy/
 * commands.lua) need to reach it.
 *
 *   core.control_open{id =, name =, dir =, log =, savepoint_dir =,
 *                     checkpoint_interval =, notify_fd =}
 *                                     -> Control | nil, message
 *   ctl:finish(state [, savepoint [, error]])   the job ended
 *   ctl:serve(ms, state) -> cancelled  serve requests while the job waits
 *   ctl:id()  ctl:socket()  ctl:status_path()
 *   core.control_dir()                -> folder | nil, message
 *   core.control_jobs([dir])          -> { status, ... } | nil, message
 *   core.control_request(socket, request_table, timeout_ms)
 *                                     -> reply table | nil, message
 *   core.savepoint_dispose(path)      -> true | nil, message
 *
 * A Control is closed (finished as FAILED if nothing said otherwise) by
 * __close or __gc; `local ctl <close>` in job:run finishes it with the
 * error that ended the run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/binding.h"
#include "runtime/control.h"
#include "runtime/storage.h"

#define CONTROL_MT "eddy.Control"

typedef struct lcontrol {
  eddy_control *c;
} lcontrol;

eddy_control *eddy_lua_check_control(lua_State *L, int idx)
{
  lcontrol *lc = luaL_checkudata(L, idx, CONTROL_MT);
  luaL_argcheck(L, lc->c != NULL, idx, "the control socket is closed");
  return lc->c;
}

static const char *opt_string_field(lua_State *L, int idx, const char *name)
{
  lua_getfield(L, idx, name);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

static int l_control_open(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  eddy_control_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.id = opt_string_field(L, 1, "id");
  cfg.name = opt_string_field(L, 1, "name");
  cfg.dir = opt_string_field(L, 1, "dir");
  cfg.log = opt_string_field(L, 1, "log");
  cfg.savepoint_dir = opt_string_field(L, 1, "savepoint_dir");
  lua_getfield(L, 1, "checkpoint_interval");
  cfg.checkpoint_interval = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "notify_fd");
  cfg.notify_fd = (int)luaL_optinteger(L, -1, -1);
  lua_pop(L, 2);
  lcontrol *lc = lua_newuserdatauv(L, sizeof *lc, 0);
  lc->c = NULL;
  luaL_setmetatable(L, CONTROL_MT);
  eddy_err err;
  if (eddy_control_open(&lc->c, &cfg, &err) != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  return 1;
}

/* ctl:finish(state [, savepoint [, error]]) */
static int l_control_finish(lua_State *L)
{
  eddy_control *c = eddy_lua_check_control(L, 1);
  static const char *const states[] = {"FINISHED", "STOPPED", "CANCELED", "FAILED", NULL};
  const char *state = states[luaL_checkoption(L, 2, NULL, states)];
  const char *savepoint = luaL_optstring(L, 3, NULL);
  const char *error = luaL_optstring(L, 4, NULL);
  eddy_err err;
  if (eddy_control_finish(c, state, savepoint, error, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 0;
}

/* ctl:serve(ms, state) -> whether a cancel request came */
static int l_control_serve(lua_State *L)
{
  eddy_control *c = eddy_lua_check_control(L, 1);
  lua_Integer ms = luaL_checkinteger(L, 2);
  const char *state = luaL_checkstring(L, 3);
  int cancel = 0;
  eddy_control_serve_idle(c, ms, state, &cancel);
  lua_pushboolean(L, cancel);
  return 1;
}

static int l_control_id(lua_State *L)
{
  lua_pushstring(L, eddy_control_id(eddy_lua_check_control(L, 1)));
  return 1;
}

static int l_control_socket(lua_State *L)
{
  lua_pushstring(L, eddy_control_socket(eddy_lua_check_control(L, 1)));
  return 1;
}

static int l_control_status_path(lua_State *L)
{
  lua_pushstring(L, eddy_control_status_path(eddy_lua_check_control(L, 1)));
  return 1;
}

/* __gc and __close: never raises. As __close, argument 2 is the error
 * that is leaving the scope (nil on a normal exit). */
static int control_gc(lua_State *L)
{
  lcontrol *lc = luaL_checkudata(L, 1, CONTROL_MT);
  if (lc->c == NULL)
    return 0;
  if (!eddy_control_finished(lc->c)) {
    const char *msg = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    int cancelled = msg != NULL && (strcmp(msg, "cancelled") == 0 ||
                                    strcmp(msg, "interrupted") == 0);
    eddy_err ignored;
    if (cancelled)
      eddy_control_finish(lc->c, "CANCELED", NULL, NULL, &ignored);
    else if (msg != NULL || !lua_isnoneornil(L, 2))
      eddy_control_finish(lc->c, "FAILED", NULL, msg ? msg : "(an error that is not a string)",
                          &ignored);
  }
  eddy_control_close(lc->c);
  lc->c = NULL;
  return 0;
}

static int l_control_dir(lua_State *L)
{
  char dir[4096];
  eddy_err err;
  if (eddy_control_dir(dir, sizeof dir, &err) != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  lua_pushstring(L, dir);
  return 1;
}

/* Pushes a JSON value as a Lua value: objects and arrays become tables,
 * null becomes nil (and is left out of tables). */
static void push_json(lua_State *L, json_t *v, int depth)
{
  luaL_checkstack(L, 3, "JSON nested too deeply");
  if (depth > 64) {
    lua_pushnil(L);
    return;
  }
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    lua_createtable(L, 0, (int)json_object_size(v));
    const char *key;
    json_t *item;
    json_object_foreach(v, key, item) {
      if (json_is_null(item))
        continue;
      push_json(L, item, depth + 1);
      lua_setfield(L, -2, key);
    }
    return;
  }
  case JSON_ARRAY: {
    lua_createtable(L, (int)json_array_size(v), 0);
    lua_Integer n = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
      json_t *item = json_array_get(v, i);
      if (json_is_null(item))
        continue;
      push_json(L, item, depth + 1);
      lua_rawseti(L, -2, ++n);
    }
    return;
  }
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(v), json_string_length(v));
    return;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(v));
    return;
  case JSON_REAL:
    lua_pushnumber(L, json_real_value(v));
    return;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    return;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    return;
  case JSON_NULL:
    lua_pushnil(L);
    return;
  }
  lua_pushnil(L);
}

static int push_json_protected(lua_State *L)
{
  push_json(L, lua_touserdata(L, 1), 0);
  return 1;
}

/* Pushes v and drops the reference to it, also when pushing raises (out
 * of memory): the conversion runs under its own protected call. */
static void push_json_owned(lua_State *L, json_t *v)
{
  lua_pushcfunction(L, push_json_protected);
  lua_pushlightuserdata(L, v);
  int rc = lua_pcall(L, 1, 1, 0);
  json_decref(v);
  if (rc != LUA_OK)
    lua_error(L);
}

/* core.control_jobs([dir]) -> array of status tables, dir */
static int l_control_jobs(lua_State *L)
{
  char dir[4096];
  eddy_err err;
  const char *given = luaL_optstring(L, 1, NULL);
  if (given != NULL)
    snprintf(dir, sizeof dir, "%s", given);
  json_t *list = NULL;
  if ((given == NULL && eddy_control_dir(dir, sizeof dir, &err) != EDDY_OK) ||
      eddy_control_list(dir, &list, &err) != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  push_json_owned(L, list);
  lua_pushstring(L, dir);
  return 2;
}

/* A flat request table as a JSON object: strings, numbers and booleans.
 * NULL if a string is not UTF-8, which JSON cannot carry (a folder named
 * in another encoding): *bad is its key. */
static json_t *request_json(lua_State *L, int idx, const char **bad)
{
  json_t *o = json_object();
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      switch (lua_type(L, -1)) {
      case LUA_TSTRING: {
        json_t *v = json_string(lua_tostring(L, -1));
        if (v == NULL) {
          *bad = k; /* the table keeps the key alive */
          lua_pop(L, 2);
          json_decref(o);
          return NULL;
        }
        json_object_set_new(o, k, v);
        break;
      }
      case LUA_TBOOLEAN:
        json_object_set_new(o, k, json_boolean(lua_toboolean(L, -1)));
        break;
      case LUA_TNUMBER:
        if (lua_isinteger(L, -1))
          json_object_set_new(o, k, json_integer((json_int_t)lua_tointeger(L, -1)));
        else
          json_object_set_new(o, k, json_real(lua_tonumber(L, -1)));
        break;
      default:
        break;
      }
    }
    lua_pop(L, 1);
  }
  return o;
}

/* core.control_request(socket, request, timeout_ms) -> reply | nil, message */
static int l_control_request(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer timeout = luaL_checkinteger(L, 3);
  luaL_argcheck(L, timeout > 0 && timeout <= 24 * 3600 * 1000, 3, "a timeout in ms");
  const char *bad = NULL;
  json_t *req = request_json(L, 2, &bad);
  if (req == NULL)
    return luaL_error(L, "%s: only UTF-8 text can be sent to a job", bad);
  char *text = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  if (text == NULL)
    return luaL_error(L, "out of memory");
  char *reply = NULL;
  eddy_err err;
  int rc = eddy_control_request(path, text, (int)timeout, &reply, &err);
  free(text);
  if (rc != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  json_error_t jerr;
  json_t *o = json_loads(reply, 0, &jerr);
  free(reply);
  if (o == NULL || !json_is_object(o)) {
    json_decref(o);
    lua_pushnil(L);
    lua_pushfstring(L, "the job's answer is not a JSON object: %s", o ? "" : jerr.text);
    return 2;
  }
  push_json_owned(L, o);
  return 1;
}

/* core.savepoint_dispose(path) -> true | nil, message: only a savepoint
 * (its folder or _metadata) is removed, never a checkpoint or anything
 * else. */
static int l_savepoint_dispose(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  eddy_err err;
  eddy_chk *c;
  if (eddy_chk_open(path, &c, &err) != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  char kind[32];
  snprintf(kind, sizeof kind, "%s", eddy_chk_kind(c) ? eddy_chk_kind(c) : "checkpoint");
  eddy_chk_close(c);
  if (strcmp(kind, "savepoint") != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s is a %s, not a savepoint: not disposed of", path, kind);
    return 2;
  }
  if (eddy_chk_dispose(path, &err) != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.absolute_path(path) -> path made absolute against the current
 * folder (a request's folder means the same to the job, whose current
 * folder may be another) */
static int l_absolute_path(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  if (path[0] == '/') {
    lua_settop(L, 1);
    return 1;
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return eddy_lua_fail(L, "cannot tell the current folder: %s", strerror(errno));
  while (path[0] == '.' && path[1] == '/')
    path += 2;
  if (strcmp(path, ".") == 0 || path[0] == '\0')
    lua_pushstring(L, cwd);
  else
    lua_pushfstring(L, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", path);
  return 1;
}

void eddy_open_control(lua_State *L, int ctx)
{
  static const luaL_Reg meta[] = {{"__close", control_gc}, {"__gc", control_gc}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"finish", l_control_finish}, {"id", l_control_id}, {"serve", l_control_serve},
      {"socket", l_control_socket}, {"status_path", l_control_status_path}, {NULL, NULL}};
  luaL_newmetatable(L, CONTROL_MT);
  eddy_lua_setfuncs(L, meta, ctx);
  lua_newtable(L);
  eddy_lua_setfuncs(L, methods, ctx);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {
      {"absolute_path", l_absolute_path}, {"control_dir", l_control_dir}, {"control_jobs", l_control_jobs},
      {"control_open", l_control_open}, {"control_request", l_control_request},
      {"savepoint_dispose", l_savepoint_dispose}, {NULL, NULL}};
  eddy_lua_setfuncs(L, funcs, ctx);
}
