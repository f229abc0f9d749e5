/*
 * Files for Lua: "eddy.Reader" wraps the engine's record reader
 * (runtime/reader.h) for from_file and from_stdin, "eddy.Writer" its part
 * file writer (runtime/writer.h) for to_file. Records cross as canonical
 * MessagePack, decoded straight into Lua values here.
 */
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "runtime/reader.h"
#include "runtime/writer.h"

#define READER_MT "eddy.Reader"
#define WRITER_MT "eddy.Writer"

typedef struct lreader {
  eddy_reader *r; /* NULL once closed */
} lreader;

typedef struct lwriter {
  eddy_writer *w; /* NULL once closed */
} lwriter;

static eddy_format_kind check_format(lua_State *L, int idx)
{
  lua_getfield(L, idx, "format");
  const char *name = luaL_optstring(L, -1, "lines");
  eddy_format_kind kind;
  eddy_err err;
  if (eddy_format_parse(name, &kind, &err) != EDDY_OK)
    eddy_lua_raise(L, &err);
  lua_pop(L, 1);
  return kind;
}

/* The CSV options of an options table: header, delimiter, infer_types. */
static void csv_options(lua_State *L, int idx, eddy_csv_options *csv)
{
  eddy_format_csv_defaults(csv);
  if (lua_getfield(L, idx, "header") != LUA_TNIL)
    csv->header = lua_toboolean(L, -1);
  if (lua_getfield(L, idx, "infer_types") != LUA_TNIL)
    csv->infer_types = lua_toboolean(L, -1);
  if (lua_getfield(L, idx, "delimiter") != LUA_TNIL) {
    size_t len;
    const char *d = luaL_checklstring(L, -1, &len);
    if (len != 1)
      luaL_error(L, "delimiter: expected one character, got \"%s\"", d);
    csv->delimiter = (unsigned char)d[0];
  }
  lua_pop(L, 3);
  eddy_err err;
  if (eddy_format_csv_check(csv, &err) != EDDY_OK)
    eddy_lua_raise(L, &err);
}

/* ---- reader ---- */

static int reader_gc(lua_State *L)
{
  lreader *lr = luaL_checkudata(L, 1, READER_MT);
  eddy_reader_close(lr->r);
  lr->r = NULL;
  return 0;
}

/* core.reader_open{path = | fd =, format =, header =, delimiter =,
 * infer_types =, skip_errors =, max_line =} -> Reader */
static int l_reader_open(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  eddy_reader_config cfg;
  eddy_reader_config_init(&cfg);
  cfg.format = check_format(L, 1);
  csv_options(L, 1, &cfg.csv);
  lua_getfield(L, 1, "path");
  cfg.path = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "fd");
  cfg.fd = (int)luaL_optinteger(L, -1, -1);
  lua_getfield(L, 1, "max_line");
  cfg.max_line = (size_t)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "skip_errors");
  cfg.skip_errors = lua_toboolean(L, -1);
  lua_getfield(L, 1, "nonblocking");
  cfg.nonblocking = lua_toboolean(L, -1);
  if (cfg.path == NULL && cfg.fd < 0)
    return luaL_error(L, "reader_open: a path or an fd is needed");
  lreader *lr = lua_newuserdatauv(L, sizeof *lr, 0);
  lr->r = NULL;
  luaL_setmetatable(L, READER_MT);
  eddy_err err;
  if (eddy_reader_open(&cfg, &lr->r, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 1;
}

static eddy_reader *check_reader(lua_State *L)
{
  lreader *lr = luaL_checkudata(L, 1, READER_MT);
  if (lr->r == NULL)
    luaL_error(L, "the reader is closed");
  return lr->r;
}

/* reader:next() -> the next record, nil at the end, or false when a
 * non-blocking reader has nothing yet; raises "file:line: what" for a
 * malformed record (unless skipping). */
static int l_reader_next(lua_State *L)
{
  eddy_reader *r = check_reader(L);
  eddy_slice rec;
  eddy_err err;
  int rc = eddy_reader_next(r, &rec, &err);
  if (rc == EDDY_EEOF) {
    lua_pushnil(L);
    return 1;
  }
  if (rc == EDDY_EAGAIN) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc == EDDY_EINTR)
    return eddy_lua_fail(L, "interrupted");
  if (rc != EDDY_OK)
    return eddy_lua_raise(L, &err);
  if (eddy_lua_decode(L, rec.data, rec.len, NULL, &err) != EDDY_OK)
    return eddy_lua_fail(L, "%s: %s", eddy_reader_name(r), err.msg);
  return 1;
}

/* reader:skipped() -> count, first message (or nil) */
static int l_reader_skipped(lua_State *L)
{
  eddy_reader *r = check_reader(L);
  lua_pushinteger(L, (lua_Integer)eddy_reader_skipped(r));
  const char *first = eddy_reader_first_skipped(r);
  if (first != NULL && first[0] != '\0')
    lua_pushstring(L, first);
  else
    lua_pushnil(L);
  return 2;
}

/* reader:position() -> byte offset, line number after the last record */
static int l_reader_position(lua_State *L)
{
  eddy_reader *r = check_reader(L);
  lua_pushinteger(L, (lua_Integer)eddy_reader_offset(r));
  lua_pushinteger(L, (lua_Integer)eddy_reader_line(r));
  return 2;
}

/* reader:seek(offset, line): go on from a position reader:position() gave
 * (restoring a source from a checkpoint) */
static int l_reader_seek(lua_State *L)
{
  eddy_reader *r = check_reader(L);
  lua_Integer offset = luaL_checkinteger(L, 2), line = luaL_checkinteger(L, 3);
  luaL_argcheck(L, offset >= 0 && line >= 0, 2, "a position is never negative");
  eddy_err err;
  if (eddy_reader_seek(r, (uint64_t)offset, (uint64_t)line, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 0;
}

/* ---- writer ---- */

static int writer_gc(lua_State *L)
{
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  if (lw->w != NULL) {
    eddy_err err;
    eddy_writer_close(lw->w, &err); /* a collected writer has no one to tell */
    lw->w = NULL;
  }
  return 0;
}

/* core.writer_open{dir =, subtask =, format =, header =, delimiter =} */
static int l_writer_open(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  eddy_writer_config cfg;
  eddy_writer_config_init(&cfg);
  cfg.format = check_format(L, 1);
  csv_options(L, 1, &cfg.csv);
  lua_getfield(L, 1, "dir");
  cfg.dir = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "subtask");
  cfg.subtask = (int)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "transactional");
  cfg.transactional = lua_toboolean(L, -1);
  lwriter *lw = lua_newuserdatauv(L, sizeof *lw, 0);
  lw->w = NULL;
  luaL_setmetatable(L, WRITER_MT);
  eddy_err err;
  if (eddy_writer_open(&cfg, &lw->w, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 1;
}

static int l_writer_write(lua_State *L)
{
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  if (lw->w == NULL)
    return luaL_error(L, "the writer is closed");
  luaL_checkany(L, 2);
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  if (eddy_lua_encode(L, 2, c, "record", &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  if (eddy_writer_write(lw->w, c->out.data, c->out.len, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 0;
}

/* writer:close(): flushes and syncs; closing twice is fine. */
static int l_writer_close(lua_State *L)
{
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  if (lw->w == NULL)
    return 0;
  eddy_err err;
  int rc = eddy_writer_close(lw->w, &err);
  lw->w = NULL;
  if (rc != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 0;
}

/* writer:prepare() -> the path of the in-progress file it closed, or nil */
static int l_writer_prepare(lua_State *L)
{
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  if (lw->w == NULL)
    return luaL_error(L, "the writer is closed");
  char *path;
  eddy_err err;
  if (eddy_writer_prepare(lw->w, &path, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  if (path == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, path); /* may raise (memory): path must be freed first */
  free(path);
  return 1;
}

/* core.writer_commit(path): makes an in-progress part file visible */
static int l_writer_commit(lua_State *L)
{
  eddy_err err;
  if (eddy_writer_commit(luaL_checkstring(L, 1), &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 0;
}

/* core.writer_recover(dir, subtask, {paths to keep}) */
static int l_writer_recover(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  int subtask = (int)luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  size_t n = lua_rawlen(L, 3);
  const char **keep = lua_newuserdatauv(L, (n ? n : 1) * sizeof *keep, 0);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 3, (lua_Integer)i + 1);
    keep[i] = luaL_checkstring(L, -1); /* stays alive: the table holds it */
    lua_pop(L, 1);
  }
  eddy_err err;
  if (eddy_writer_recover(dir, subtask, keep, n, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 0;
}

static int l_writer_path(lua_State *L)
{
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  const char *p = lw->w ? eddy_writer_path(lw->w) : NULL;
  if (p != NULL)
    lua_pushstring(L, p);
  else
    lua_pushnil(L);
  return 1;
}

static void new_type(lua_State *L, const char *mt, const luaL_Reg *methods,
                     lua_CFunction gc, int ctx)
{
  luaL_newmetatable(L, mt);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_newtable(L);
  eddy_lua_setfuncs(L, methods, ctx);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void eddy_open_io(lua_State *L, int ctx)
{
  static const luaL_Reg reader_methods[] = {
      {"close", reader_gc}, {"next", l_reader_next}, {"position", l_reader_position},
      {"seek", l_reader_seek}, {"skipped", l_reader_skipped}, {NULL, NULL}};
  static const luaL_Reg writer_methods[] = {
      {"close", l_writer_close}, {"path", l_writer_path},
      {"prepare", l_writer_prepare}, {"write", l_writer_write}, {NULL, NULL}};
  new_type(L, READER_MT, reader_methods, reader_gc, ctx);
  new_type(L, WRITER_MT, writer_methods, writer_gc, ctx);
  static const luaL_Reg funcs[] = {
      {"reader_open", l_reader_open}, {"writer_commit", l_writer_commit},
      {"writer_open", l_writer_open}, {"writer_recover", l_writer_recover}, {NULL, NULL}};
  eddy_lua_setfuncs(L, funcs, ctx);
}
