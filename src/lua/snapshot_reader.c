/*
 * Reading a completed checkpoint or savepoint, for eddy.savepoint.load and
 * `eddy inspect` (lua/eddy/savepoint.lua). Nothing here parses a snapshot
 * a second way: the files are opened and verified by the checkpoint
 * storage (runtime/storage.h), and an operator's keyed state is restored,
 * from the `.keyed` files of all its subtasks, into a fresh heap backend
 * that owns every key group, exactly as a job restores it at parallelism
 * 1. A subtask of an incremental RocksDB checkpoint keeps its rows in
 * RocksDB's own files instead (its `.keyed` file has the states and
 * timers): they are put in a temporary folder, opened read-only, and their
 * rows read into the same backend. The eddy.Keyed that comes back is the
 * one the harness uses, so its rows and timers decode into Lua values the
 * same way.
 *
 *   core.snapshot_open(path) -> SnapshotFile | nil, message, why
 *   file:info()              -> what _metadata says
 *   file:keyed(maxp, names)  -> eddy.Keyed | nil, message
 *   file:read(name)          -> the file's bytes, decompressed | nil, message
 *   core.json(value)         -> one line of JSON, as the jsonl sink writes it
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua/binding.h"
#include "lua/state.h"
#include "runtime/format.h"
#include "runtime/storage.h"
#include "state/keygroup.h"
#include "state/snapshot.h"
#include "util/fs.h"

#define SNAPSHOT_FILE_MT "eddy.SnapshotFile"

typedef struct lsnapshot {
  eddy_chk *c; /* NULL once closed */
} lsnapshot;

static lsnapshot *check_snapshot(lua_State *L, int idx)
{
  lsnapshot *s = luaL_checkudata(L, idx, SNAPSHOT_FILE_MT);
  if (s->c == NULL)
    luaL_error(L, "attempt to use a closed snapshot");
  return s;
}

/* __gc and __close: idempotent, never raises */
static int snapshot_gc(lua_State *L)
{
  lsnapshot *s = luaL_checkudata(L, 1, SNAPSHOT_FILE_MT);
  eddy_chk_close(s->c);
  s->c = NULL;
  return 0;
}

static int l_snapshot_tostring(lua_State *L)
{
  lsnapshot *s = luaL_checkudata(L, 1, SNAPSHOT_FILE_MT);
  if (s->c == NULL)
    lua_pushliteral(L, "eddy.SnapshotFile (closed)");
  else
    lua_pushfstring(L, "eddy.SnapshotFile (%s)", eddy_chk_path(s->c));
  return 1;
}

/* nil, message, why: the expected failures, for the Lua side to word */
static int fail(lua_State *L, const char *why, const char *msg)
{
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, why);
  return 3;
}

/* A folder without _metadata is not a checkpoint at all, which the
 * storage would call a damaged one ("x/_metadata: missing"). URIs are left
 * to the storage, which knows how to read them. */
static int lacks_metadata(const char *path)
{
  struct stat st;
  if (strncmp(path, "file:", 5) == 0 || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return 0;
  size_t n = strlen(path);
  char meta[4096];
  if (n + sizeof "/_metadata" > sizeof meta)
    return 0;
  memcpy(meta, path, n);
  memcpy(meta + n, "/_metadata", sizeof "/_metadata");
  return stat(meta, &st) != 0;
}

/* Whether the folder holds any folder, where checkpoints could be. */
static int has_subfolders(const char *path)
{
  DIR *d = opendir(path);
  if (d == NULL)
    return 0;
  int found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL)
    found = e->d_type == DT_DIR ? strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0
                                : e->d_type == DT_UNKNOWN || e->d_type == DT_LNK;
  closedir(d);
  return found;
}

/* core.snapshot_open(path) -> SnapshotFile, after every file was checked
 * against its size and checksum; or nil, message, why, where why is
 * "missing", "not_checkpoint", "damaged", "unsupported" or "io". A folder
 * without _metadata gives a fourth value: whether it has folders in it,
 * which may be checkpoints worth pointing at. */
static int l_snapshot_open(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  if (lacks_metadata(path)) {
    lua_pushfstring(L, "%s: not a checkpoint or savepoint (no _metadata in it)", path);
    fail(L, "not_checkpoint", lua_tostring(L, -1));
    lua_pushboolean(L, has_subfolders(path));
    return 4;
  }
  /* the userdata first, so that a raise cannot leak the handle */
  lsnapshot *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->c = NULL;
  luaL_setmetatable(L, SNAPSHOT_FILE_MT);
  eddy_err err;
  int rc = eddy_chk_open(path, &s->c, &err);
  switch (rc) {
  case EDDY_OK:
    return 1;
  case EDDY_ENOTFOUND:
    return fail(L, "missing", err.msg);
  case EDDY_EINVAL:
    return fail(L, "not_checkpoint", err.msg);
  case EDDY_ECORRUPT:
    return fail(L, "damaged", err.msg);
  case EDDY_EUNSUPPORTED:
    return fail(L, "unsupported", err.msg);
  default:
    return fail(L, "io", err.msg);
  }
}

static void set_string(lua_State *L, json_t *obj, const char *key)
{
  const char *v = json_string_value(json_object_get(obj, key));
  if (v != NULL) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, key);
  }
}

static void set_integer(lua_State *L, json_t *obj, const char *key)
{
  json_t *v = json_object_get(obj, key);
  if (json_is_integer(v)) {
    lua_pushinteger(L, (lua_Integer)json_integer_value(v));
    lua_setfield(L, -2, key);
  }
}

/* Pushes an array of the strings in a JSON array (others are skipped). */
static void push_strings(lua_State *L, json_t *a)
{
  lua_createtable(L, (int)json_array_size(a), 0);
  lua_Integer n = 0;
  for (size_t i = 0; i < json_array_size(a); i++) {
    const char *v = json_string_value(json_array_get(a, i));
    if (v != NULL) {
      lua_pushstring(L, v);
      lua_rawseti(L, -2, ++n);
    }
  }
}

/* file:info() -> {path =, name =, id =, job =, kind =, time =, job_name =,
 * subtasks = {{vertex =, uid =, subtask =, parallelism =,
 * max_parallelism =, key_groups = {first, last}, parts = {...},
 * finished =}, ...}, files = {[name] = {size =, raw_size =}}}
 * as _metadata has them; fields it lacks are left out. */
static int l_snapshot_info(lua_State *L)
{
  eddy_chk *c = check_snapshot(L, 1)->c;
  json_t *meta = eddy_chk_metadata(c);
  eddy_lua_push_chk_summary(L, c);
  json_t *subtasks = json_object_get(meta, "subtasks");
  lua_createtable(L, (int)json_array_size(subtasks), 0);
  for (size_t i = 0; i < json_array_size(subtasks); i++) {
    json_t *e = json_array_get(subtasks, i);
    lua_createtable(L, 0, 8);
    set_string(L, e, "vertex");
    set_string(L, e, "uid");
    set_integer(L, e, "subtask");
    set_integer(L, e, "parallelism");
    set_integer(L, e, "max_parallelism");
    json_t *range = json_object_get(e, "key_groups");
    if (json_is_integer(json_array_get(range, 0)) && json_is_integer(json_array_get(range, 1))) {
      lua_createtable(L, 2, 0);
      lua_pushinteger(L, (lua_Integer)json_integer_value(json_array_get(range, 0)));
      lua_rawseti(L, -2, 1);
      lua_pushinteger(L, (lua_Integer)json_integer_value(json_array_get(range, 1)));
      lua_rawseti(L, -2, 2);
      lua_setfield(L, -2, "key_groups");
    }
    push_strings(L, json_object_get(e, "parts"));
    lua_setfield(L, -2, "parts");
    lua_pushboolean(L, json_is_true(json_object_get(e, "finished")));
    lua_setfield(L, -2, "finished");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "subtasks");
  int n = eddy_chk_entry_count(c);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const eddy_chk_entry *e = eddy_chk_entry_at(c, i);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)e->size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)e->raw_size);
    lua_setfield(L, -2, "raw_size");
    lua_setfield(L, -2, e->name);
  }
  lua_setfield(L, -2, "files");
  return 1;
}

/* Restores file `name` of c into k. */
static int restore_file(eddy_chk *c, eddy_keyed *k, const char *name, eddy_err *err)
{
  eddy_chk_reader *r;
  int rc = eddy_chk_reader_open(c, name, &r, err);
  if (rc != EDDY_OK)
    return rc;
  return eddy_lua_restore_keyed(k, r, err);
}


/* The rows of a native part, when the subtask whose parts list file name
 * has one, into k (whose states the file registered). */
static int restore_native_of(eddy_chk *c, const char *name, eddy_keyed *k, eddy_err *err)
{
  json_t *subtasks = json_object_get(eddy_chk_metadata(c), "subtasks"), *native = NULL;
  for (size_t i = 0; native == NULL && i < json_array_size(subtasks); i++) {
    json_t *e = json_array_get(subtasks, i), *parts = json_object_get(e, "parts");
    for (size_t p = 0; p < json_array_size(parts); p++) {
      const char *part = json_string_value(json_array_get(parts, p));
      if (part != NULL && strcmp(part, name) == 0)
        native = json_object_get(e, "native");
    }
  }
  if (native == NULL)
    return EDDY_OK;
  const char *format = json_string_value(json_object_get(native, "format"));
  if (format == NULL || strcmp(format, "rocksdb") != 0)
    return eddy_seterr(err, EDDY_EUNSUPPORTED, "keyed state in a native format this eddy does "
                       "not read (%s)", format ? format : "?");
  const char *tmp = getenv("TMPDIR");
  char base[4096], dir[4200];
  snprintf(base, sizeof base, "%s/eddy-inspect-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (mkdtemp(base) == NULL)
    return eddy_seterr(err, EDDY_EIO, "cannot make a folder to read RocksDB files in %s: %s",
                       tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
  snprintf(dir, sizeof dir, "%s/db", base);
  int rc = eddy_chk_extract_files(c, json_object_get(native, "files"), dir, err);
  if (rc == EDDY_OK)
    rc = eddy_rocksdb_native_rows(dir, eddy_keyed_backend(k), eddy_keyed_timers(k), err);
  eddy_remove_tree(base);
  return rc;
}

/* Pushes a new eddy.Keyed over every key group of the max parallelism at
 * argument maxp_arg, on the backend argument backend_arg names (the last
 * argument; nil: heap). Returns its slot, or NULL with nil and a message
 * pushed when the backend cannot be made. */
static eddy_keyed **push_whole_keyed(lua_State *L, int maxp_arg, int backend_arg)
{
  lua_Integer maxp = luaL_checkinteger(L, maxp_arg);
  luaL_argcheck(L, maxp >= 1 && maxp <= EDDY_MAX_PARALLELISM_UPPER, maxp_arg,
                "max parallelism must be between 1 and 32768");
  eddy_backend_config cfg = {(int)maxp, 0, (int)maxp - 1};
  lua_settop(L, backend_arg); /* the backend's place, even when not given */
  eddy_keyed **slot = eddy_lua_push_keyed(L); /* owns what goes into *slot */
  eddy_err err;
  eddy_backend *b;
  if (eddy_lua_backend_new(L, backend_arg, &cfg, NULL, &b, &err) != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return NULL;
  }
  if (eddy_keyed_new(b, slot, &err) != EDDY_OK)
    eddy_lua_raise(L, &err);
  return slot;
}

/* file:keyed(max_parallelism, {names} [, state_backend]) -> an eddy.Keyed
 * over every key group holding the keyed state and timers of those files
 * (one operator's subtasks), on the heap backend or the one state_backend
 * names (as core.keyed_new takes it); nil, message when one is not a keyed
 * snapshot or the backend cannot be made. */
static int l_snapshot_keyed(lua_State *L)
{
  eddy_chk *c = check_snapshot(L, 1)->c;
  luaL_checktype(L, 3, LUA_TTABLE);
  eddy_keyed **slot = push_whole_keyed(L, 2, 4);
  if (slot == NULL)
    return 2;
  eddy_err err;
  lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 3, i);
    const char *name = lua_tostring(L, -1);
    if (name == NULL)
      return luaL_argerror(L, 3, "expected an array of file names");
    if (restore_file(c, *slot, name, &err) != EDDY_OK) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s/%s: %s", eddy_chk_name(c), name, err.msg);
      return 2;
    }
    if (restore_native_of(c, name, *slot, &err) != EDDY_OK) {
      lua_pushnil(L);
      lua_pushstring(L, err.msg);
      return 2;
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* file:read(name) -> the whole file, decompressed; nil, message if it
 * cannot be read. The bytes land in a userdata sized from _metadata, so
 * that nothing malloc'd is live when pushing the string may raise. */
static int l_snapshot_read(lua_State *L)
{
  eddy_chk *c = check_snapshot(L, 1)->c;
  const char *name = luaL_checkstring(L, 2);
  const eddy_chk_entry *e = eddy_chk_entry_find(c, name);
  if (e == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s/%s: no such file in the checkpoint", eddy_chk_name(c), name);
    return 2;
  }
  size_t want = (size_t)e->raw_size;
  unsigned char *data = lua_newuserdatauv(L, want + 1, 0); /* +1: never empty */
  eddy_err err;
  eddy_chk_reader *r;
  if (eddy_chk_reader_open(c, name, &r, &err) != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  size_t have = 0, got;
  int rc;
  /* one byte of room more than recorded, to notice a file that is longer
   * (the reader would then fail its own check at the end anyway) */
  while ((rc = eddy_chk_reader_read(r, data + have, want + 1 - have, &got, &err)) == EDDY_OK &&
         got > 0) {
    have += got;
    if (have > want) {
      rc = eddy_seterr(&err, EDDY_ECORRUPT, "%s/%s: longer than recorded", eddy_chk_name(c),
                       name);
      break;
    }
  }
  eddy_chk_reader_close(r);
  if (rc != EDDY_OK) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  lua_pushlstring(L, (const char *)data, have);
  return 1;
}

/* ---- snapshots of the harness: in memory and as savepoints ---- */

static int append_to_buf(void *ud, const void *p, size_t n)
{
  return eddy_buf_append(ud, p, n) == EDDY_OK ? 0 : EDDY_ENOMEM;
}

/* core.keyed_snapshot(keyed) -> the keyed state and timers of an
 * eddy.Keyed as one string, in the format of a checkpoint's .keyed file. */
static int l_keyed_snapshot(lua_State *L)
{
  eddy_keyed *k = eddy_lua_check_keyed(L, 1);
  eddy_buf *out = lua_newuserdatauv(L, sizeof *out, 0);
  memset(out, 0, sizeof *out);
  eddy_err err;
  eddy_keyed_snapshot *snap;
  if (eddy_keyed_snapshot_take(k, &snap, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  int rc = eddy_keyed_snapshot_write(snap, append_to_buf, out, &err);
  eddy_keyed_snapshot_free(snap);
  if (rc != EDDY_OK) {
    eddy_buf_free(out);
    return eddy_lua_raise(L, &err);
  }
  lua_pushlstring(L, (const char *)out->data, out->len);
  eddy_buf_free(out);
  return 1;
}

typedef struct bytes_source {
  const void *p;
  size_t n;
} bytes_source;

static int next_bytes(void *ud, const void **p, size_t *n)
{
  bytes_source *src = ud;
  *p = src->p;
  *n = src->n;
  src->n = 0;
  return 0;
}

/* core.keyed_from_snapshot(max_parallelism, {strings} [, state_backend])
 * -> an eddy.Keyed over every key group holding what those snapshots (from
 * core.keyed_snapshot) hold; nil, message when one is not one or the
 * backend cannot be made. */
static int l_keyed_from_snapshot(lua_State *L)
{
  luaL_checktype(L, 2, LUA_TTABLE);
  eddy_keyed **slot = push_whole_keyed(L, 1, 3);
  if (slot == NULL)
    return 2;
  eddy_err err;
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    bytes_source src;
    src.p = lua_tolstring(L, -1, &src.n);
    if (src.p == NULL)
      return luaL_argerror(L, 2, "expected an array of strings");
    eddy_keyed_source from = {next_bytes, &src, 0};
    if (eddy_keyed_restore(*slot, &from, &err) != EDDY_OK) {
      lua_pushnil(L);
      lua_pushstring(L, err.msg);
      return 2;
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* core.savepoint_write(dir, job_id, {{name, bytes}, ...}, extra) -> the
 * path of a new savepoint in dir holding those files; extra is the JSON
 * text of what else _metadata says (its subtasks). Raises with the
 * storage's message when it cannot be written. */
static int l_savepoint_write(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  const char *job_id = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  const char *extra = luaL_checkstring(L, 4);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
  for (lua_Integer i = 1; i <= n; i++) { /* checked first: no raise while writing */
    luaL_argcheck(L, lua_rawgeti(L, 3, i) == LUA_TTABLE, 3, "expected {name, bytes} pairs");
    luaL_argcheck(L, lua_rawgeti(L, -1, 1) == LUA_TSTRING, 3, "a file needs a name");
    luaL_argcheck(L, lua_rawgeti(L, -2, 2) == LUA_TSTRING, 3, "a file needs its bytes");
    lua_pop(L, 3);
  }
  char where[4096];
  eddy_err err;
  eddy_chk_writer *w;
  if (eddy_savepoint_begin(dir, job_id, 1, &w, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  snprintf(where, sizeof where, "%s", eddy_chk_writer_path(w));
  int rc = EDDY_OK;
  for (lua_Integer i = 1; i <= n && rc == EDDY_OK; i++) {
    lua_rawgeti(L, 3, i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    size_t len;
    const char *bytes = lua_tolstring(L, -1, &len);
    eddy_chk_file *f;
    rc = eddy_chk_file_open(w, lua_tostring(L, -2), "zstd", 0, &f, &err);
    if (rc == EDDY_OK) {
      rc = eddy_chk_file_write(f, bytes, len, &err);
      int closed = eddy_chk_file_close(f, rc == EDDY_OK ? &err : NULL);
      if (rc == EDDY_OK)
        rc = closed;
    }
    lua_pop(L, 3);
  }
  if (rc != EDDY_OK) {
    eddy_chk_abort(w);
    return eddy_lua_raise(L, &err);
  }
  if (eddy_chk_commit_text(w, extra, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  lua_pushstring(L, where);
  return 1;
}

static int l_snapshot_close(lua_State *L)
{
  return snapshot_gc(L);
}

/* core.json(value) -> the value as one line of JSON (no newline), the way
 * the jsonl sink writes records: sorted keys, floats with a '.', map keys
 * as text. Raises for what JSON cannot hold (NaN, a table as a map key). */
static int l_json(lua_State *L)
{
  luaL_checkany(L, 1);
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  if (eddy_lua_encode(L, 1, c, "value", &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  eddy_buf *json = &c->scratch;
  eddy_buf_reset(json);
  if (eddy_format_write_json(c->out.data, c->out.len, json, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  size_t len = json->len;
  if (len > 0 && json->data[len - 1] == '\n')
    len--;
  lua_pushlstring(L, (const char *)json->data, len);
  return 1;
}

void eddy_open_snapshot_reader(lua_State *L, int ctx)
{
  static const luaL_Reg meta[] = {
      {"__close", snapshot_gc}, {"__gc", snapshot_gc}, {"__tostring", l_snapshot_tostring},
      {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"close", l_snapshot_close}, {"info", l_snapshot_info}, {"keyed", l_snapshot_keyed},
      {"read", l_snapshot_read}, {NULL, NULL}};
  luaL_newmetatable(L, SNAPSHOT_FILE_MT);
  eddy_lua_setfuncs(L, meta, ctx);
  lua_newtable(L);
  eddy_lua_setfuncs(L, methods, ctx);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg funcs[] = {
      {"json", l_json}, {"keyed_from_snapshot", l_keyed_from_snapshot},
      {"keyed_snapshot", l_keyed_snapshot}, {"savepoint_write", l_savepoint_write},
      {"snapshot_open", l_snapshot_open}, {NULL, NULL}};
  eddy_lua_setfuncs(L, funcs, ctx);
}
