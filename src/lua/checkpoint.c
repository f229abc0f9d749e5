/*
 * Checkpoints on disk, for Lua: the latest usable checkpoint of a job (for
 * restarts and `eddy run --resume`), what a checkpoint folder holds (for
 * `eddy checkpoints DIR`), and discarding a job's checkpoints when its
 * retention policy says so. The writing side lives in the runtime
 * (runtime/checkpoint.c) and is reached through the job binding.
 */
#include <string.h>

#include "lua/binding.h"
#include "runtime/storage.h"
#include "state/keyed.h"
#include "state/snapshot.h"

typedef struct damaged_list {
  lua_State *L;
  int table;
  lua_Integer n;
  const char *dir;
} damaged_list;

static void note_damaged(void *ud, const char *name, const char *why, const char *next)
{
  damaged_list *d = ud;
  if (next)
    lua_pushfstring(d->L, "%s/%s is damaged (%s): falling back to %s", d->dir, name, why, next);
  else
    lua_pushfstring(d->L, "%s/%s is damaged (%s): no older checkpoint to fall back to", d->dir,
                    name, why);
  lua_rawseti(d->L, d->table, ++d->n);
}

/* core.checkpoint_latest(job_dir) -> path or nil, { messages about damaged
 * checkpoints passed over } */
static int l_checkpoint_latest(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  lua_newtable(L);
  damaged_list d = {L, lua_gettop(L), 0, dir};
  eddy_err err;
  eddy_chk *c;
  int rc = eddy_store_latest(dir, &c, note_damaged, &d, &err);
  if (rc == EDDY_ENOTFOUND) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (rc != EDDY_OK)
    return eddy_lua_raise(L, &err);
  lua_pushstring(L, eddy_chk_path(c));
  eddy_chk_close(c);
  lua_insert(L, -2);
  return 2;
}

/* core.checkpoint_info(path) -> {path =, name =, id =, job =, kind =,
 * time =, job_name =, subtasks = {{vertex =, uid =, subtask =,
 * parallelism =, max_parallelism =, parts = {"keyed", ...}, finished =,
 * keyed = "canonical" | "native"}, ...}, shared = {{name =, size =}, ...},
 * metadata = JSON text} after checking every file; raises with what is
 * damaged. */
typedef struct part_source {
  eddy_chk_reader *r;
  eddy_err err;
} part_source;

static int read_part(void *ud, const void **p, size_t *n)
{
  part_source *src = ud;
  return eddy_chk_reader_next(src->r, p, n, &src->err);
}

int eddy_lua_restore_keyed(eddy_keyed *k, eddy_chk_reader *r, eddy_err *err)
{
  part_source src = {r, {EDDY_OK, ""}};
  /* decompressing on another thread overlaps with putting the rows in;
   * if that thread cannot be had, the restore only takes longer */
  eddy_err ahead_err;
  eddy_chk_reader_ahead(r, &ahead_err);
  /* the reader checks the file's checksum, which covers every byte */
  eddy_keyed_source from = {read_part, &src, 1};
  int rc = eddy_keyed_restore(k, &from, err);
  eddy_chk_reader_close(r);
  if (rc != EDDY_OK && src.err.code != EDDY_OK)
    eddy_err_copy(err, &src.err); /* the file's own problem says more */
  return rc;
}

void eddy_lua_push_chk_summary(lua_State *L, eddy_chk *c)
{
  lua_createtable(L, 0, 10);
  lua_pushstring(L, eddy_chk_path(c));
  lua_setfield(L, -2, "path");
  lua_pushstring(L, eddy_chk_name(c));
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, eddy_chk_id(c));
  lua_setfield(L, -2, "id");
  lua_pushstring(L, eddy_chk_job(c));
  lua_setfield(L, -2, "job");
  lua_pushstring(L, eddy_chk_kind(c));
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, eddy_chk_time(c));
  lua_setfield(L, -2, "time");
  const char *job_name = json_string_value(json_object_get(eddy_chk_metadata(c), "name"));
  if (job_name != NULL) {
    lua_pushstring(L, job_name);
    lua_setfield(L, -2, "job_name");
  }
}

static int l_checkpoint_info(lua_State *L)
{
  eddy_err err;
  eddy_chk *c;
  if (eddy_chk_open(luaL_checkstring(L, 1), &c, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  eddy_lua_push_chk_summary(L, c);
  /* the subtasks whose state it holds, to match against a job's graph */
  json_t *subtasks = json_object_get(eddy_chk_metadata(c), "subtasks");
  lua_createtable(L, (int)json_array_size(subtasks), 0);
  for (size_t i = 0; i < json_array_size(subtasks); i++) {
    json_t *e = json_array_get(subtasks, i);
    lua_createtable(L, 0, 7);
    static const char *const strings[] = {"vertex", "uid", "keyed"};
    for (int k = 0; k < 3; k++) {
      const char *v = json_string_value(json_object_get(e, strings[k]));
      if (v != NULL) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, strings[k]);
      }
    }
    static const char *const integers[] = {"subtask", "parallelism", "max_parallelism"};
    for (int k = 0; k < 3; k++) {
      json_t *v = json_object_get(e, integers[k]);
      if (json_is_integer(v)) {
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        lua_setfield(L, -2, integers[k]);
      }
    }
    json_t *parts = json_object_get(e, "parts");
    lua_createtable(L, (int)json_array_size(parts), 0);
    for (size_t k = 0; k < json_array_size(parts); k++) {
      const char *part = json_string_value(json_array_get(parts, k));
      const char *dot = part ? strrchr(part, '.') : NULL;
      lua_pushstring(L, dot ? dot + 1 : part ? part : "");
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "parts");
    if (json_is_true(json_object_get(e, "finished"))) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "finished");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "subtasks");
  /* the shared files it references (incremental checkpoints) */
  int nshared = eddy_chk_shared_count(c);
  lua_createtable(L, nshared, 0);
  for (int i = 0; i < nshared; i++) {
    const eddy_chk_shared *e = eddy_chk_shared_at(c, i);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, e->name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)e->size);
    lua_setfield(L, -2, "size");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "shared");
  size_t len;
  const char *meta = eddy_chk_metadata_text(c, &len);
  lua_pushlstring(L, meta ? meta : "", meta ? len : 0);
  lua_setfield(L, -2, "metadata");
  eddy_chk_close(c);
  return 1;
}

static int list_one(void *ud, const eddy_chk_info *info)
{
  lua_State *L = ud;
  lua_createtable(L, 0, 9);
  lua_pushstring(L, info->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, info->name);
  lua_setfield(L, -2, "name");
  if (info->job) {
    lua_pushstring(L, info->job);
    lua_setfield(L, -2, "job");
  }
  lua_pushinteger(L, info->id);
  lua_setfield(L, -2, "id");
  if (info->kind) {
    lua_pushstring(L, info->kind);
    lua_setfield(L, -2, "kind");
  }
  lua_pushinteger(L, info->time);
  lua_setfield(L, -2, "time");
  lua_pushinteger(L, (lua_Integer)info->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)info->shared);
  lua_setfield(L, -2, "shared");
  lua_pushstring(L, eddy_chk_state_name(info->state));
  lua_setfield(L, -2, "state");
  if (info->problem) {
    lua_pushstring(L, info->problem);
    lua_setfield(L, -2, "problem");
  }
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* core.checkpoints_list(dir [, verify]) -> { {path, name, job, id, kind,
 * time, size, shared, state, problem}, ... }: size takes in the shared
 * files a checkpoint references, shared says how much of it they are */
static int l_checkpoints_list(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  int verify = lua_toboolean(L, 2);
  lua_newtable(L);
  eddy_err err;
  if (eddy_store_list(dir, verify, list_one, L, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 1;
}

/* core.checkpoints_discard(job_dir): removes the job's completed
 * checkpoints (and the folder once empty) */
static int l_checkpoints_discard(lua_State *L)
{
  eddy_err err;
  if (eddy_store_discard(luaL_checkstring(L, 1), &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 0;
}

void eddy_open_checkpoint(lua_State *L, int ctx)
{
  static const luaL_Reg funcs[] = {
      {"checkpoint_info", l_checkpoint_info},
      {"checkpoint_latest", l_checkpoint_latest},
      {"checkpoints_discard", l_checkpoints_discard},
      {"checkpoints_list", l_checkpoints_list},
      {NULL, NULL}};
  eddy_lua_setfuncs(L, funcs, ctx);
}
