/*
 * Running a job graph from Lua. The Lua half of the module compiles a job
 * script's streams into vertices (chains of Lua functions) and calls
 * core.job_new / add_vertex / connect / run; this file implements the
 * runtime's vertex callbacks (runtime/job.h) by calling those chains.
 *
 * Each callback runs its Lua work under lua_pcall, because a Lua error must
 * never unwind through the engine's C frames: the error becomes the job's
 * message, the engine stops and closes every subtask, and only then does
 * job:run() raise it.
 *
 * Per subtask, open(task, keyed) returns a handler table:
 *   poll(budget) -> finished      sources: emit up to budget records
 *   push(value, input)            others: one record (the current key and
 *                                 timestamp are already set)
 *   call = {f, a, b}              optional, instead of push: each record is
 *                                 handed over as f(a, value, b), which
 *                                 saves a Lua call when the chain starts
 *                                 with a process function
 *   finish()                      end of input (optional)
 *   close()                       always, at the end (optional)
 * Records go out through emitters: task:emitter(output [, field, selector])
 * returns function(value) and, for keyed outputs, function(value, key), or
 * with a field name, function(value) that takes the key from that field
 * (calling selector only to report a record without it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua/binding.h"
#include "lua/state.h"
#include "runtime/checkpoint.h"
#include "runtime/control.h"
#include "runtime/job.h"
#include "state/keyed.h"
#include "util/fs.h"
#include "util/interrupt.h"

#define JOB_MT "eddy.Job"
#define TASK_MT "eddy.Task"

struct ljob;

typedef struct lvertex {
  struct ljob *job;
  int parallelism;
  lua_State *L;
  eddy_binding *binding; /* for callbacks that encode */
  int open_ref;  /* the vertex's open function */
  int keyed;     /* subtasks get keyed state */
  int backend_ref; /* the job's state_backend table, or LUA_NOREF: heap */
  char *label;   /* RocksDB working folders are <label>_<subtask index> */
  char *name;
} lvertex;

typedef struct ljob {
  eddy_job *job;
  eddy_chk *restore; /* the checkpoint a run starts from, owned */
  lvertex **vertices;
  int nvertices;
  int running;
  /* RocksDB's bounded memory, shared by the job's keyed subtasks; made
   * when the first of them opens */
  eddy_rocksdb_memory *memory;
  int memory_made;
} ljob;

typedef struct ltask {
  lua_State *L;
  eddy_binding *binding;
  eddy_task *t;      /* NULL outside the job's run */
  eddy_keyed *keyed; /* owned by the Keyed userdata in keyed_ref */
  int keyed_ref;
  int task_ref;      /* the Task userdata */
  int handler_ref;
  int push_ref;
  int poll_ref;
  int watermark_ref;
  int call_ref; /* the handler's call table, or LUA_NOREF */
  int64_t timestamp; /* of the record being processed */
  int incremental; /* RocksDB: checkpoints are native and incremental */
} ltask;

typedef struct ltask_ud {
  ltask *lt; /* NULL once the subtask is closed */
} ltask_ud;

/* ---- running Lua under pcall from engine callbacks ---- */

static int message_handler(lua_State *L)
{
  if (lua_type(L, 1) == LUA_TSTRING)
    return 1;
  if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
    return 1;
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  return 1;
}

/* Calls the function below nargs arguments on the stack; on error, writes
 * the job's message with where it happened. */
static int pcall_task(ltask *lt, int nargs, int nresults)
{
  lua_State *L = lt->L;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, message_handler);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  if (status == LUA_OK)
    return EDDY_OK;
  if (eddy_interrupt_pending()) {
    lua_pop(L, 1);
    return eddy_task_seterr(lt->t, EDDY_EINTR, "interrupted");
  }
  const char *msg = lua_tostring(L, -1);
  int p = eddy_task_parallelism(lt->t);
  if (p > 1)
    eddy_task_seterr(lt->t, EDDY_ECALLBACK, "%s (in %s, subtask %d of %d)",
                     msg ? msg : "error", eddy_task_name(lt->t),
                     eddy_task_index(lt->t) + 1, p);
  else
    eddy_task_seterr(lt->t, EDDY_ECALLBACK, "%s (in %s)", msg ? msg : "error",
                     eddy_task_name(lt->t));
  lua_pop(L, 1);
  return EDDY_ECALLBACK;
}

static int ref_field(lua_State *L, int idx, const char *name)
{
  if (lua_getfield(L, idx, name) == LUA_TFUNCTION)
    return luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return LUA_NOREF;
}

/* ---- restoring from a checkpoint ---- */

/* The keyed state of this subtask in the checkpoint restored from. */
static int restore_keyed_from(eddy_task *t, int old_index, eddy_keyed *k, eddy_err *err)
{
  eddy_chk_reader *r;
  int rc = eddy_task_restore_part_of(t, old_index, "keyed", &r, err);
  if (rc == EDDY_ENOTFOUND)
    return EDDY_OK;
  if (rc != EDDY_OK)
    return rc;
  return eddy_lua_restore_keyed(k, r, err);
}


/* The rows of the old subtasks whose keyed state is native (an
 * incremental RocksDB checkpoint): their files are put in folders of the
 * working folder (hard links), which a RocksDB backend takes as its
 * database when one of them has its very key groups, or copies its key
 * groups' rows out of; any other backend reads the rows in from a
 * temporary folder, once the canonical parts beside them registered the
 * states (and restored the timers). */
static int restore_native(eddy_task *t, eddy_keyed *k, int *olds, int nold, eddy_err *err)
{
  eddy_backend *b = eddy_keyed_backend(k);
  const char *work = eddy_rocksdb_backend_path(b);
  char base[4096];
  int temp = work == NULL;
  if (temp) {
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/eddy-restore-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    int any = 0;
    for (int i = 0; i < nold; i++)
      any |= eddy_task_restored_native(t, olds[i], NULL, NULL, NULL) == EDDY_OK;
    if (!any)
      return EDDY_OK;
    if (mkdtemp(base) == NULL)
      return eddy_seterr(err, EDDY_EIO, "cannot make a folder to restore into in %s: %s",
                         tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", strerror(errno));
  } else {
    snprintf(base, sizeof base, "%s", work);
  }
  eddy_rocksdb_native *srcs = calloc((size_t)nold, sizeof *srcs);
  char (*dirs)[4200] = calloc((size_t)nold, sizeof *dirs);
  int *from = calloc((size_t)nold, sizeof *from);
  int n = 0, rc = srcs == NULL || dirs == NULL || from == NULL
                      ? eddy_seterr(err, EDDY_ENOMEM, "out of memory restoring keyed state")
                      : EDDY_OK;
  for (int i = 0; i < nold && rc == EDDY_OK; i++) {
    const char *format;
    int first, last;
    if (eddy_task_restored_native(t, olds[i], &format, &first, &last) != EDDY_OK)
      continue;
    if (format == NULL || strcmp(format, "rocksdb") != 0) {
      rc = eddy_seterr(err, EDDY_EUNSUPPORTED, "subtask %d holds keyed state in a native "
                       "format this eddy does not read (%s)", olds[i], format ? format : "?");
      break;
    }
    snprintf(dirs[n], sizeof dirs[n], "%s/restore-%d", base, olds[i]);
    eddy_remove_tree(dirs[n]); /* an earlier attempt's */
    if ((rc = eddy_task_restore_native(t, olds[i], dirs[n], err)) != EDDY_OK)
      break;
    srcs[n] = (eddy_rocksdb_native){dirs[n], first, last};
    from[n++] = olds[i];
  }
  if (rc == EDDY_OK && n > 0 && !temp) {
    int adopted;
    rc = eddy_rocksdb_restore_native(b, srcs, n, eddy_keyed_timers(k), &adopted, err);
    if (rc == EDDY_OK && adopted >= 0)
      eddy_task_adopt_native(t, from[adopted]);
  }
  for (int i = 0; temp && i < n && rc == EDDY_OK; i++)
    rc = eddy_rocksdb_native_rows(dirs[i], b, eddy_keyed_timers(k), err);
  for (int i = 0; i < n; i++)
    eddy_remove_tree(dirs[i]);
  if (temp)
    eddy_remove_tree(base);
  free(srcs);
  free(dirs);
  free(from);
  return rc;
}

/* The keyed state of this subtask: its own part, or, when the parallelism
 * changed, the key groups it now owns from every old subtask that had
 * some of them (the restore skips the others). */
static int restore_keyed(eddy_task *t, eddy_keyed *k, eddy_err *err)
{
  int old_p = eddy_task_restored_parallelism(t);
  if (old_p == 0)
    return EDDY_OK;
  int maxp, first, last;
  eddy_task_key_groups(t, &maxp, &first, &last);
  int *olds = calloc((size_t)old_p, sizeof *olds), nold = 0;
  if (olds == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory restoring keyed state");
  if (old_p == eddy_task_parallelism(t)) {
    olds[nold++] = eddy_task_index(t);
  } else {
    for (int i = 0; i < old_p; i++) {
      int from, to;
      if (eddy_task_restored_key_groups(t, i, &from, &to) == EDDY_OK && to >= first &&
          from <= last)
        olds[nold++] = i;
    }
  }
  /* a RocksDB backend takes native files as its database before any
   * state is registered (they become the states' column families); any
   * other backend needs the states registered to read native rows */
  int rocks = eddy_rocksdb_backend_path(eddy_keyed_backend(k)) != NULL;
  int rc = rocks ? restore_native(t, k, olds, nold, err) : EDDY_OK;
  for (int i = 0; i < nold && rc == EDDY_OK; i++)
    rc = restore_keyed_from(t, olds[i], k, err);
  if (rc == EDDY_OK && !rocks)
    rc = restore_native(t, k, olds, nold, err);
  free(olds);
  return rc;
}

/* Pushes the operator states old subtask old_index stored (a table by
 * uid), or false when it stored none. */
static int push_operators_of(lua_State *L, eddy_task *t, int old_index, eddy_err *err)
{
  eddy_chk_reader *r;
  int rc = eddy_task_restore_part_of(t, old_index, "operators", &r, err);
  if (rc == EDDY_ENOTFOUND) {
    lua_pushboolean(L, 0);
    return EDDY_OK;
  }
  if (rc != EDDY_OK)
    return rc;
  eddy_buf all = EDDY_BUF_INIT;
  char chunk[16384];
  size_t got;
  while ((rc = eddy_chk_reader_read(r, chunk, sizeof chunk, &got, err)) == EDDY_OK && got > 0)
    if (eddy_buf_append(&all, chunk, got) != EDDY_OK) {
      rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory restoring operator state");
      break;
    }
  eddy_chk_reader_close(r);
  if (rc == EDDY_OK)
    rc = eddy_lua_decode(L, all.data, all.len, NULL, err);
  eddy_buf_free(&all);
  return rc;
}

/* Pushes the operator states of this vertex in the checkpoint restored
 * from: { parallelism = old p, [old index + 1] = that subtask's table by
 * uid, or false }, or nil when not restoring (or the vertex is new). Lua
 * hands them out, redistributing them if the parallelism changed. */
static int push_restored(lua_State *L, eddy_task *t, eddy_err *err)
{
  int old_p = eddy_task_restored_parallelism(t);
  if (old_p == 0) {
    lua_pushnil(L);
    return EDDY_OK;
  }
  lua_createtable(L, old_p, 1);
  lua_pushinteger(L, old_p);
  lua_setfield(L, -2, "parallelism");
  for (int i = 0; i < old_p; i++) {
    int rc = push_operators_of(L, t, i, err);
    if (rc != EDDY_OK)
      return rc;
    lua_rawseti(L, -2, i + 1);
  }
  return EDDY_OK;
}

/* ---- vertex callbacks ---- */

static int open_protected(lua_State *L)
{
  lvertex *v = lua_touserdata(L, 1);
  ltask *lt = lua_touserdata(L, 2);
  eddy_task *t = lt->t;

  ltask_ud *ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->lt = lt;
  luaL_setmetatable(L, TASK_MT);
  lua_pushvalue(L, -1);
  lt->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  eddy_err err;
  if (v->keyed) {
    eddy_backend_config cfg;
    eddy_task_key_groups(t, &cfg.max_parallelism, &cfg.first_key_group,
                         &cfg.last_key_group);
    eddy_backend *b;
    char folder[300];
    if (v->label != NULL)
      snprintf(folder, sizeof folder, "%s_%d", v->label, eddy_task_index(t));
    lua_rawgeti(L, LUA_REGISTRYINDEX, v->backend_ref); /* nil for LUA_NOREF */
    ljob *j = v->job;
    if (!j->memory_made) {
      /* one budget for every keyed subtask of the job (Flink's is per
       * slot, which holds a subtask of each operator) */
      int sharers = 0;
      for (int i = 0; i < j->nvertices; i++)
        sharers += j->vertices[i]->keyed ? j->vertices[i]->parallelism : 0;
      if (eddy_lua_rocksdb_memory(L, -1, sharers, &j->memory, &err) != EDDY_OK)
        return eddy_lua_raise(L, &err);
      j->memory_made = 1;
    }
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "incremental");
      lt->incremental = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    eddy_keyed **slot = eddy_lua_push_keyed(L);
    int rc = eddy_lua_backend_new_shared(L, -2, &cfg, v->label != NULL ? folder : NULL, j->memory,
                                         &b, &err);
    lua_remove(L, -2); /* the state_backend table */
    if (rc != EDDY_OK)
      return eddy_lua_raise(L, &err);
    if (eddy_keyed_new(b, slot, &err) != EDDY_OK)
      return eddy_lua_raise(L, &err);
    lt->keyed = *slot;
    lua_pushvalue(L, -1);
    lt->keyed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (restore_keyed(t, lt->keyed, &err) != EDDY_OK)
      return eddy_lua_raise(L, &err);
  } else {
    lua_pushnil(L);
  }
  /* the operators' restored state, by uid (nil when not restoring) */
  if (push_restored(L, t, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  lua_rawgeti(L, LUA_REGISTRYINDEX, v->open_ref);
  lua_insert(L, -4);
  lua_call(L, 3, 1);
  if (!lua_istable(L, -1))
    return luaL_error(L, "a vertex's open must return a handler table");
  lt->push_ref = ref_field(L, -1, "push");
  lt->poll_ref = ref_field(L, -1, "poll");
  lt->watermark_ref = ref_field(L, -1, "watermark");
  if (lua_getfield(L, -1, "call") == LUA_TTABLE)
    lt->call_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  lt->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static void release_task(ltask *lt);

static int op_open(void *vertex_ud, eddy_task *t, void **task_ud)
{
  lvertex *v = vertex_ud;
  lua_State *L = v->L;
  ltask *lt = calloc(1, sizeof *lt);
  if (lt == NULL)
    return eddy_task_seterr(t, EDDY_ENOMEM, "out of memory opening %s", v->name);
  lt->L = L;
  lt->binding = v->binding;
  lt->t = t;
  lt->keyed_ref = lt->task_ref = lt->handler_ref = LUA_NOREF;
  lt->push_ref = lt->poll_ref = lt->call_ref = lt->watermark_ref = LUA_NOREF;
  lt->timestamp = EDDY_NO_TIMESTAMP;
  lua_pushcfunction(L, open_protected);
  lua_pushlightuserdata(L, v);
  lua_pushlightuserdata(L, lt);
  int rc = pcall_task(lt, 2, 0);
  if (rc != EDDY_OK) {
    release_task(lt); /* the runtime closes only what opened */
    return rc;
  }
  *task_ud = lt;
  return EDDY_OK;
}

static int op_poll(void *task_ud, eddy_task *t, int budget, int *finished)
{
  ltask *lt = task_ud;
  lua_State *L = lt->L;
  if (lt->poll_ref == LUA_NOREF)
    return eddy_task_seterr(t, EDDY_EINVAL, "%s: a source needs a poll function",
                            eddy_task_name(t));
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->poll_ref);
  lua_pushinteger(L, budget);
  int rc = pcall_task(lt, 1, 1);
  if (rc != EDDY_OK)
    return rc;
  *finished = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return EDDY_OK;
}

static int process_protected(lua_State *L)
{
  ltask *lt = lua_touserdata(L, 1);
  const eddy_frame *frames = lua_touserdata(L, 2);
  int n = (int)lua_tointeger(L, 3);
  int direct = lt->call_ref != LUA_NOREF;
  if (direct) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->call_ref);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->push_ref);
  }
  int top = lua_gettop(L);
  eddy_err err;
  for (int i = 0; i < n; i++) {
    const eddy_frame *f = &frames[i];
    if (f->kind == EDDY_FRAME_WATERMARK) {
      if (lt->watermark_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, lt->watermark_ref);
        lua_pushinteger(L, f->timestamp);
        lua_call(L, 1, 0);
      }
      continue;
    }
    if (lt->keyed != NULL) {
      /* a record of a broadcast input carries no key: no key is current
       * while it is processed, rather than the previous record's */
      if (f->key.len == 0)
        eddy_keyed_clear_key(lt->keyed);
      else if (eddy_keyed_set_key(lt->keyed, f->key.data, f->key.len, f->key_group) != EDDY_OK)
        return eddy_lua_fail(L, "%s", eddy_keyed_errmsg(lt->keyed));
    }
    lt->timestamp = f->timestamp;
    if (direct) {
      lua_pushvalue(L, top - 2); /* f */
      lua_pushvalue(L, top - 1); /* a */
    } else {
      lua_pushvalue(L, top); /* push */
    }
    if (eddy_lua_decode(L, f->value.data, f->value.len, NULL, &err) != EDDY_OK)
      return eddy_lua_fail(L, "a record arrived damaged: %s", err.msg);
    if (direct)
      lua_pushvalue(L, top); /* b */
    else
      lua_pushinteger(L, f->input + 1);
    lua_call(L, direct ? 3 : 2, 0);
  }
  return 0;
}

static int op_process(void *task_ud, eddy_task *t, const eddy_frame *frames, int n)
{
  (void)t;
  ltask *lt = task_ud;
  lua_State *L = lt->L;
  lua_pushcfunction(L, process_protected);
  lua_pushlightuserdata(L, lt);
  lua_pushlightuserdata(L, (void *)frames);
  lua_pushinteger(L, n);
  int rc = pcall_task(lt, 3, 0);
  if (lt->keyed != NULL)
    eddy_keyed_clear_key(lt->keyed);
  return rc;
}

/* Calls handler[name]() if the handler has it. */
static int call_handler(ltask *lt, const char *name)
{
  lua_State *L = lt->L;
  if (lt->handler_ref == LUA_NOREF)
    return EDDY_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->handler_ref);
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
    lua_pop(L, 2);
    return EDDY_OK;
  }
  lua_remove(L, -2);
  return pcall_task(lt, 0, 0);
}

static int op_finish(void *task_ud, eddy_task *t)
{
  (void)t;
  return call_handler(task_ud, "finish");
}

/* Drops the Lua references of a subtask and frees it. */
static void release_task(ltask *lt)
{
  lua_State *L = lt->L;
  if (lt->task_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->task_ref);
    ltask_ud *ud = lua_touserdata(L, -1);
    ud->lt = NULL; /* emitters kept by the script now fail cleanly */
    lua_pop(L, 1);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, lt->task_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->handler_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->push_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->poll_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->call_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->watermark_ref);
  if (lt->keyed_ref != LUA_NOREF) {
    /* the state goes now, not when the collector finds its userdata: a
     * restart or the next job reuses the memory instead of growing */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->keyed_ref);
    eddy_keyed **slot = lua_touserdata(L, -1);
    eddy_keyed_free(*slot);
    *slot = NULL;
    lua_pop(L, 1);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, lt->keyed_ref);
  free(lt);
}

static int op_close(void *task_ud, eddy_task *t)
{
  (void)t;
  ltask *lt = task_ud;
  int rc = call_handler(lt, "close");
  release_task(lt);
  return rc;
}

/* Calls handler[name](arg) if the handler has it. */
static int call_handler_with(ltask *lt, const char *name, int64_t arg, int as_bool)
{
  lua_State *L = lt->L;
  if (lt->handler_ref == LUA_NOREF)
    return EDDY_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->handler_ref);
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
    lua_pop(L, 2);
    return EDDY_OK;
  }
  lua_remove(L, -2);
  if (as_bool)
    lua_pushboolean(L, arg != 0);
  else
    lua_pushinteger(L, arg);
  return pcall_task(lt, 1, 0);
}

static int op_watermark(void *task_ud, eddy_task *t, int64_t wm)
{
  (void)t;
  return call_handler_with(task_ud, "watermark", wm, 0);
}

static int op_status(void *task_ud, eddy_task *t, int idle)
{
  (void)t;
  return call_handler_with(task_ud, "status", idle, 1);
}

static int op_alarm(void *task_ud, eddy_task *t, int64_t now)
{
  (void)t;
  return call_handler_with(task_ud, "alarm", now, 0);
}

/* The synchronous part of a checkpoint: the chain's operator states (a
 * table by uid from handler.snapshot) and the keyed state, frozen. */
static int snapshot_protected(lua_State *L)
{
  ltask *lt = lua_touserdata(L, 1);
  int64_t id = lua_tointeger(L, 2);
  eddy_snapshot *snap = lua_touserdata(L, 3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->handler_ref);
  if (lua_getfield(L, -1, "snapshot") == LUA_TFUNCTION) {
    lua_pushinteger(L, id);
    lua_call(L, 1, 1);
    if (!lua_isnil(L, -1)) {
      eddy_codec *c = eddy_lua_codec(L);
      eddy_err err;
      eddy_buf_reset(&c->out);
      if (eddy_lua_encode(L, -1, c, "operator state", &err) != EDDY_OK)
        return eddy_lua_raise(L, &err);
      if (eddy_snapshot_add_blob(snap, "operators", c->out.data, c->out.len) != EDDY_OK)
        return eddy_lua_fail(L, "cannot snapshot the operator state");
    }
  }
  if (lt->keyed != NULL) {
    eddy_err err;
    eddy_keyed_snapshot *ks;
    eddy_backend *b = eddy_keyed_backend(lt->keyed);
    /* incremental: RocksDB's own files for the rows, shared between
     * checkpoints, and the states and timers beside them; savepoints are
     * canonical, always */
    if (lt->incremental && eddy_rocksdb_backend_path(b) != NULL &&
        eddy_snapshot_purpose_of(snap) == EDDY_SNAPSHOT_CHECKPOINT) {
      int maxp, first, last;
      char *dir;
      eddy_backend_key_groups(b, &maxp, &first, &last);
      if (eddy_rocksdb_checkpoint(b, id, &dir, &err) != EDDY_OK)
        return eddy_lua_raise(L, &err);
      int rc = eddy_snapshot_add_native(snap, "rocksdb", "rocksdb", dir, first, last);
      free(dir); /* the snapshot has the folder now */
      if (rc != EDDY_OK)
        return eddy_lua_fail(L, "cannot snapshot the keyed state");
      if (eddy_keyed_snapshot_take_timers(lt->keyed, &ks, &err) != EDDY_OK)
        return eddy_lua_raise(L, &err);
    } else if (eddy_keyed_snapshot_take(lt->keyed, &ks, &err) != EDDY_OK) {
      return eddy_lua_raise(L, &err);
    }
    if (eddy_snapshot_add_keyed(snap, "keyed", ks) != EDDY_OK)
      return eddy_lua_fail(L, "cannot snapshot the keyed state");
  }
  return 0;
}

static int op_snapshot(void *task_ud, eddy_task *t, int64_t id, eddy_snapshot *snap)
{
  (void)t;
  ltask *lt = task_ud;
  lua_State *L = lt->L;
  lua_pushlightuserdata(L, lt->binding);
  lua_pushcclosure(L, snapshot_protected, 1); /* the codec is upvalue 1 */
  lua_pushlightuserdata(L, lt);
  lua_pushinteger(L, id);
  lua_pushlightuserdata(L, snap);
  return pcall_task(lt, 3, 0);
}

static int op_notify(void *task_ud, eddy_task *t, int64_t id, int completed)
{
  (void)t;
  ltask *lt = task_ud;
  lua_State *L = lt->L;
  if (lt->handler_ref == LUA_NOREF)
    return EDDY_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->handler_ref);
  if (lua_getfield(L, -1, "notify") != LUA_TFUNCTION) {
    lua_pop(L, 2);
    return EDDY_OK;
  }
  lua_remove(L, -2);
  lua_pushinteger(L, id);
  lua_pushboolean(L, completed);
  return pcall_task(lt, 2, 0);
}

/* The backend's figures for every state of the subtask's keyed state
 * (none on the heap backend, which keeps no estimates). */
static int op_state_metrics(void *task_ud, eddy_task *t, eddy_task_state_metrics *out, int cap)
{
  (void)t;
  ltask *lt = task_ud;
  if (lt->keyed == NULL)
    return 0;
  eddy_backend *b = eddy_keyed_backend(lt->keyed);
  uint32_t n = eddy_backend_state_count(b);
  int got = 0;
  for (uint32_t s = 0; s < n && got < cap; s++) {
    if (eddy_backend_state_metrics(b, s, &out[got].m) != EDDY_OK)
      continue;
    snprintf(out[got].name, sizeof out[got].name, "%s", eddy_backend_state_name(b, s));
    got++;
  }
  return got;
}

static const eddy_vertex_ops lua_vertex_ops = {
    .open = op_open,
    .poll = op_poll,
    .process = op_process,
    .watermark = op_watermark,
    .status = op_status,
    .alarm = op_alarm,
    .snapshot = op_snapshot,
    .notify = op_notify,
    .finish = op_finish,
    .close = op_close,
    .state_metrics = op_state_metrics,
};

/* ---- eddy.Task: what a chain sees of its subtask ---- */

static ltask *check_task(lua_State *L, int idx)
{
  ltask_ud *ud = luaL_checkudata(L, idx, TASK_MT);
  if (ud->lt == NULL)
    luaL_error(L, "this subtask has finished");
  return ud->lt;
}

static int l_task_index(lua_State *L)
{
  lua_pushinteger(L, eddy_task_index(check_task(L, 1)->t));
  return 1;
}

static int l_task_parallelism(lua_State *L)
{
  lua_pushinteger(L, eddy_task_parallelism(check_task(L, 1)->t));
  return 1;
}

static int l_task_name(lua_State *L)
{
  lua_pushstring(L, eddy_task_name(check_task(L, 1)->t));
  return 1;
}

static int l_task_timestamp(lua_State *L)
{
  ltask *lt = check_task(L, 1);
  if (lt->timestamp == EDDY_NO_TIMESTAMP)
    lua_pushnil(L);
  else
    lua_pushinteger(L, lt->timestamp);
  return 1;
}

static int l_task_set_timestamp(lua_State *L)
{
  ltask *lt = check_task(L, 1);
  lt->timestamp = lua_isnoneornil(L, 2) ? EDDY_NO_TIMESTAMP : luaL_checkinteger(L, 2);
  return 0;
}

/* task:emit_watermark(output, wm) */
static int l_task_emit_watermark(lua_State *L)
{
  ltask *lt = check_task(L, 1);
  int output = (int)luaL_checkinteger(L, 2);
  if (eddy_task_emit_watermark(lt->t, output, luaL_checkinteger(L, 3)) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_task_emit_errmsg(lt->t));
  return 0;
}

/* task:emit_status(output, idle) */
static int l_task_emit_status(lua_State *L)
{
  ltask *lt = check_task(L, 1);
  int output = (int)luaL_checkinteger(L, 2);
  if (eddy_task_emit_status(lt->t, output, lua_toboolean(L, 3)) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_task_emit_errmsg(lt->t));
  return 0;
}

static int l_task_now(lua_State *L)
{
  lua_pushinteger(L, eddy_task_now(check_task(L, 1)->t));
  return 1;
}

static int l_task_wake_at(lua_State *L)
{
  ltask *lt = check_task(L, 1);
  eddy_task_wake_at(lt->t, luaL_checkinteger(L, 2));
  return 0;
}

static int l_task_wait_until(lua_State *L)
{
  ltask *lt = check_task(L, 1);
  eddy_task_wait_until(lt->t, luaL_checkinteger(L, 2));
  return 0;
}

/* task:watermark() -> the subtask's input watermark (math.mininteger
 * before the first) */
static int l_task_watermark(lua_State *L)
{
  lua_pushinteger(L, eddy_task_watermark(check_task(L, 1)->t));
  return 1;
}

static int l_task_key_groups(lua_State *L)
{
  ltask *lt = check_task(L, 1);
  int maxp, first, last;
  eddy_task_key_groups(lt->t, &maxp, &first, &last);
  lua_pushinteger(L, maxp);
  lua_pushinteger(L, first);
  lua_pushinteger(L, last);
  return 3;
}

/* emit(value [, key]): upvalue 1 is the binding, 2 the Task, 3 the output
 * index, 4 the key's field name (or nil), 5 the key selector that explains
 * a missing field. */
static int emit(lua_State *L)
{
  ltask *lt = check_task(L, lua_upvalueindex(2));
  int output = (int)lua_tointeger(L, lua_upvalueindex(3));
  luaL_checkany(L, 1);
  if (lua_isnil(L, 1))
    return eddy_lua_fail(L, "a record must not be nil");
  if (!lua_isnil(L, lua_upvalueindex(4))) {
    lua_settop(L, 1);
    if (lua_type(L, 1) == LUA_TTABLE) {
      lua_pushvalue(L, lua_upvalueindex(4));
      lua_gettable(L, 1); /* record, key */
    } else {
      lua_pushnil(L);
    }
    if (lua_isnil(L, 2)) {
      /* the selector says what is wrong with the record, and raises */
      lua_pop(L, 1);
      lua_pushvalue(L, lua_upvalueindex(5));
      lua_pushvalue(L, 1);
      lua_call(L, 1, 1); /* record, key */
    }
  }
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  size_t klen = 0;
  if (!lua_isnone(L, 2)) {
    if (lua_isnil(L, 2))
      return eddy_lua_fail(L, "a record's key must not be nil");
    if (eddy_lua_encode(L, 2, c, "key", &err) != EDDY_OK)
      return eddy_lua_fail(L, "key_by: %s", err.msg);
    klen = c->out.len;
  }
  if (eddy_lua_encode(L, 1, c, "record", &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  int rc = eddy_task_emit(lt->t, output, lt->timestamp, c->out.data, klen,
                          c->out.data + klen, c->out.len - klen);
  if (rc != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_task_emit_errmsg(lt->t));
  return 0;
}

/* task:emitter(output [, field, selector]) -> emit function */
static int l_task_emitter(lua_State *L)
{
  check_task(L, 1);
  lua_Integer output = luaL_checkinteger(L, 2);
  int has_field = !lua_isnoneornil(L, 3);
  if (has_field)
    luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 4);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushinteger(L, output);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  lua_pushcclosure(L, emit, 5);
  return 1;
}

/* ---- eddy.Job ---- */

static ljob *check_job(lua_State *L, int idx)
{
  ljob *j = luaL_checkudata(L, idx, JOB_MT);
  luaL_argcheck(L, j->job != NULL, idx, "job is closed");
  return j;
}

static int job_gc(lua_State *L)
{
  ljob *j = luaL_checkudata(L, 1, JOB_MT);
  if (j->running)
    return 0; /* __close during a run that raised: the run cleans up */
  eddy_job_free(j->job); /* its backends first: they hold the memory too */
  j->job = NULL;
  eddy_chk_close(j->restore);
  j->restore = NULL;
  eddy_rocksdb_memory_release(j->memory);
  j->memory = NULL;
  for (int i = 0; i < j->nvertices; i++) {
    luaL_unref(L, LUA_REGISTRYINDEX, j->vertices[i]->open_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, j->vertices[i]->backend_ref);
    free(j->vertices[i]->label);
    free(j->vertices[i]->name);
    free(j->vertices[i]);
  }
  free(j->vertices);
  j->vertices = NULL;
  j->nvertices = 0;
  return 0;
}

static int l_job_new(lua_State *L)
{
  ljob *j = lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  luaL_setmetatable(L, JOB_MT);
  eddy_err err;
  if (eddy_job_new(&j->job, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  return 1;
}

static int opt_int_field(lua_State *L, int idx, const char *name, int def)
{
  lua_getfield(L, idx, name);
  int v = (int)luaL_optinteger(L, -1, def);
  lua_pop(L, 1);
  return v;
}

/* job:add_vertex{name =, parallelism =, max_parallelism =, source =,
 * keyed =, state_backend =, state_label =, open = function(task, keyed)
 * return handler end} -> id. state_backend is the job's (eddy.config's
 * shape; nil: heap); a RocksDB subtask works in <dir>/<state_label>_<i>,
 * locked while it runs, or in a unique folder without a label. */
static int l_job_add_vertex(lua_State *L)
{
  ljob *j = check_job(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "name");
  const char *name = luaL_optstring(L, -1, "vertex");
  lua_getfield(L, 2, "open");
  luaL_argcheck(L, lua_isfunction(L, -1), 2, "open must be a function");
  lua_getfield(L, 2, "source");
  int is_source = lua_toboolean(L, -1);
  lua_getfield(L, 2, "keyed");
  int keyed = lua_toboolean(L, -1);
  lua_pop(L, 2);

  lvertex **vs = realloc(j->vertices, (size_t)(j->nvertices + 1) * sizeof *vs);
  if (vs == NULL)
    return luaL_error(L, "out of memory adding a vertex");
  j->vertices = vs;
  lua_getfield(L, 2, "state_label");
  const char *label = luaL_optstring(L, -1, NULL);
  lua_pop(L, 1); /* the table keeps the string alive */
  luaL_argcheck(L, label == NULL || (strlen(label) < 200 && strchr(label, '/') == NULL), 2,
                "state_label must be a short file name");
  lvertex *v = calloc(1, sizeof *v);
  if (v == NULL || (v->name = strdup(name)) == NULL ||
      (label != NULL && (v->label = strdup(label)) == NULL)) {
    if (v != NULL)
      free(v->name);
    free(v);
    return luaL_error(L, "out of memory adding a vertex");
  }
  v->backend_ref = LUA_NOREF;
  v->job = j;
  v->parallelism = opt_int_field(L, 2, "parallelism", 1);
  v->L = L;
  v->binding = eddy_lua_binding(L);
  v->keyed = keyed;
  v->open_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops open */
  j->vertices[j->nvertices++] = v;
  if (lua_getfield(L, 2, "state_backend") == LUA_TTABLE)
    v->backend_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);

  eddy_vertex_config cfg;
  lua_getfield(L, 2, "uid");
  cfg.uid = luaL_optstring(L, -1, NULL);
  lua_pop(L, 1); /* the table keeps the string alive */
  cfg.name = name;
  cfg.parallelism = opt_int_field(L, 2, "parallelism", 1);
  cfg.max_parallelism = opt_int_field(L, 2, "max_parallelism", 128);
  cfg.is_source = is_source;
  cfg.ops = &lua_vertex_ops;
  cfg.ud = v;
  int id;
  if (eddy_job_add_vertex(j->job, &cfg, &id) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_job_errmsg(j->job));
  lua_pushinteger(L, id);
  return 1;
}

/* job:connect(from, to, partitioning) -> output index, input index */
static int l_job_connect(lua_State *L)
{
  static const char *const names[] = {"forward", "keyed", "rebalance", "broadcast", NULL};
  static const eddy_partitioning parts[] = {EDDY_PART_FORWARD, EDDY_PART_KEYED,
                                            EDDY_PART_REBALANCE, EDDY_PART_BROADCAST};
  ljob *j = check_job(L, 1);
  int from = (int)luaL_checkinteger(L, 2);
  int to = (int)luaL_checkinteger(L, 3);
  eddy_partitioning part = parts[luaL_checkoption(L, 4, NULL, names)];
  int out, in;
  if (eddy_job_connect(j->job, from, to, part, &out, &in) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_job_errmsg(j->job));
  lua_pushinteger(L, out);
  lua_pushinteger(L, in + 1);
  return 2;
}

static lua_Integer int_field(lua_State *L, int idx, const char *name, lua_Integer def)
{
  lua_getfield(L, idx, name);
  lua_Integer v = luaL_optinteger(L, -1, def);
  lua_pop(L, 1);
  return v;
}

/* job:enable_checkpoints{interval =, timeout =, min_pause =, max_concurrent =,
 * mode = "exactly_once" | "at_least_once", unaligned =, aligned_timeout =,
 * tolerable_failures =, retained =, dir =, job_id =, name =, compression =,
 * level =, next_id =, failures =, trace = boolean} (durations in ms, already
 * validated by eddy.config) */
static int l_job_enable_checkpoints(lua_State *L)
{
  ljob *j = check_job(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  eddy_checkpoint_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.interval = int_field(L, 2, "interval", 0);
  cfg.timeout = int_field(L, 2, "timeout", 600000);
  cfg.min_pause = int_field(L, 2, "min_pause", 0);
  cfg.max_concurrent = (int)int_field(L, 2, "max_concurrent", 1);
  cfg.aligned_timeout = int_field(L, 2, "aligned_timeout", 0);
  cfg.tolerable_failures = (int)int_field(L, 2, "tolerable_failures", 0);
  cfg.retained = (int)int_field(L, 2, "retained", 1);
  cfg.level = (int)int_field(L, 2, "level", 1);
  cfg.next_id = int_field(L, 2, "next_id", 1);
  cfg.failures = (int)int_field(L, 2, "failures", 0);
  lua_getfield(L, 2, "mode");
  cfg.mode = strcmp(luaL_optstring(L, -1, "exactly_once"), "at_least_once") == 0
                 ? EDDY_CKPT_AT_LEAST_ONCE
                 : EDDY_CKPT_EXACTLY_ONCE;
  lua_getfield(L, 2, "unaligned");
  cfg.unaligned = lua_toboolean(L, -1);
  lua_getfield(L, 2, "dir");
  cfg.dir = luaL_optstring(L, -1, NULL); /* none without periodic checkpoints */
  lua_getfield(L, 2, "job_id");
  cfg.job_id = luaL_checkstring(L, -1);
  lua_getfield(L, 2, "compression");
  cfg.compression = luaL_optstring(L, -1, "zstd");
  lua_getfield(L, 2, "trace");
  cfg.trace = lua_toboolean(L, -1) ? stderr : NULL;
  lua_getfield(L, 2, "name");
  cfg.job_name = luaL_optstring(L, -1, NULL);
  int rc = eddy_job_enable_checkpoints(j->job, &cfg);
  lua_pop(L, 7);
  if (rc != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_job_errmsg(j->job));
  return 0;
}

/* job:restore(path): the next run starts from this completed checkpoint */
static int l_job_restore(lua_State *L)
{
  ljob *j = check_job(L, 1);
  const char *path = luaL_checkstring(L, 2);
  eddy_err err;
  eddy_chk *c;
  if (eddy_chk_open(path, &c, &err) != EDDY_OK)
    return eddy_lua_raise(L, &err);
  eddy_chk_close(j->restore);
  j->restore = c;
  if (eddy_job_restore(j->job, c) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_job_errmsg(j->job));
  return 0;
}

/* job:checkpoints() -> { {id =, status =, triggered =, duration_ms =,
 * sync_ms =, alignment_ms =, bytes =, state_size =, path =, failure =}, ... } */
static int l_job_checkpoints(lua_State *L)
{
  static const char *const status[] = {"pending", "completed", "failed"};
  ljob *j = check_job(L, 1);
  int n = eddy_job_checkpoint_count(j->job);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    eddy_ckpt_info info;
    eddy_job_checkpoint_info(j->job, i, &info);
    lua_createtable(L, 0, 10);
    lua_pushinteger(L, info.id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, info.kind ? info.kind : "checkpoint");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, status[info.status]);
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, info.triggered);
    lua_setfield(L, -2, "triggered");
    lua_pushnumber(L, info.duration_ms);
    lua_setfield(L, -2, "duration_ms");
    lua_pushnumber(L, info.sync_ms);
    lua_setfield(L, -2, "sync_ms");
    lua_pushnumber(L, info.alignment_ms);
    lua_setfield(L, -2, "alignment_ms");
    lua_pushinteger(L, (lua_Integer)info.bytes);
    lua_setfield(L, -2, "bytes");
    if (info.status == EDDY_CKPT_COMPLETED) {
      lua_pushinteger(L, (lua_Integer)info.state_size);
      lua_setfield(L, -2, "state_size");
    }
    if (info.path) {
      lua_pushstring(L, info.path);
      lua_setfield(L, -2, "path");
    }
    if (info.failure) {
      lua_pushstring(L, info.failure);
      lua_setfield(L, -2, "failure");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_job_next_checkpoint_id(lua_State *L)
{
  lua_pushinteger(L, eddy_job_next_checkpoint_id(check_job(L, 1)->job));
  return 1;
}

/* A savepoint asked for from Lua ended: a line on stderr either way (the
 * caller cannot wait for it inside the run); job:checkpoints() lists it. */
static void savepoint_done(void *ud, int rc, const char *what)
{
  (void)ud;
  if (rc == EDDY_OK)
    fprintf(stderr, "eddy: savepoint written: %s\n", what);
  else
    fprintf(stderr, "eddy: savepoint failed: %s\n", what);
}

/* job:savepoint(dir [, stop [, drain]]): asks for a savepoint, taken at the
 * next round of the run (see eddy_job_savepoint) */
static int l_job_savepoint(lua_State *L)
{
  ljob *j = check_job(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  eddy_err refused;
  if (eddy_job_savepoint(j->job, dir, lua_toboolean(L, 3), lua_toboolean(L, 4), savepoint_done,
                         NULL, &refused) != EDDY_OK)
    return eddy_lua_fail(L, "%s", refused.msg);
  return 0;
}

/* job:stop_with_savepoint_at_end(dir) */
static int l_job_stop_at_end(lua_State *L)
{
  ljob *j = check_job(L, 1);
  if (eddy_job_stop_with_savepoint_at_end(j->job, luaL_checkstring(L, 2)) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_job_errmsg(j->job));
  return 0;
}

/* job:cancel(): the run ends at once with "cancelled" */
static int l_job_cancel(lua_State *L)
{
  eddy_job_cancel(check_job(L, 1)->job);
  return 0;
}

/* job:stopped() -> whether the run ended with a stop savepoint, and the
 * newest savepoint completed in the run (or nil) */
static int l_job_stopped(lua_State *L)
{
  ljob *j = check_job(L, 1);
  lua_pushboolean(L, eddy_job_stopped(j->job));
  const char *path = eddy_job_savepoint_path(j->job);
  if (path)
    lua_pushstring(L, path);
  else
    lua_pushnil(L);
  return 2;
}

/* job:checkpoint_failures(): consecutive counted failures now */
static int l_job_checkpoint_failures(lua_State *L)
{
  lua_pushinteger(L, eddy_job_checkpoint_failures(check_job(L, 1)->job));
  return 1;
}

/* job:use_manual_clock(start) */
static int l_job_use_manual_clock(lua_State *L)
{
  ljob *j = check_job(L, 1);
  if (eddy_job_use_manual_clock(j->job, luaL_optinteger(L, 2, 0)) != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_job_errmsg(j->job));
  return 0;
}

/* job:run([control]): with a control socket (control.c) served while it
 * runs; the argument keeps it alive meanwhile */
static int l_job_run(lua_State *L)
{
  ljob *j = check_job(L, 1);
  struct eddy_control *control = lua_isnoneornil(L, 2) ? NULL : eddy_lua_check_control(L, 2);
  if (j->running)
    return luaL_error(L, "the job is already running");
  eddy_interrupt_clear();
  j->running = 1;
  eddy_job_set_control(j->job, control);
  int rc = eddy_job_run(j->job);
  eddy_job_set_control(j->job, NULL);
  j->running = 0;
  if (rc == EDDY_EINTR)
    return eddy_lua_fail(L, "%s", strcmp(eddy_job_errmsg(j->job), "cancelled") == 0 ? "cancelled"
                                                                                  : "interrupted");
  if (rc != EDDY_OK)
    return eddy_lua_fail(L, "%s", eddy_job_errmsg(j->job));
  return 0;
}

/* job:stats() -> { {name =, subtasks = { {records_in =, records_out =} } } } */
/* Sets field state = { [name] = {estimated_keys =, live_sst_bytes =,
 * memtable_bytes =, block_cache_bytes =} } of the table on top, when the
 * subtask's backend has figures (figures it lacks are left out). */
static void push_state_metrics(lua_State *L, eddy_job *job, int vi, int i)
{
  const eddy_task_state_metrics *sm;
  int n = eddy_job_task_state_metrics(job, vi, i, &sm);
  if (n == 0)
    return;
  lua_createtable(L, 0, n);
  for (int k = 0; k < n; k++) {
    const eddy_state_metrics *m = &sm[k].m;
    const struct {
      const char *name;
      int64_t v;
    } fields[] = {{"estimated_keys", m->estimated_keys}, {"live_sst_bytes", m->live_sst_bytes},
                  {"memtable_bytes", m->memtable_bytes}, {"block_cache_bytes", m->block_cache_bytes}};
    lua_createtable(L, 0, 4);
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
      if (fields[f].v >= 0) {
        lua_pushinteger(L, (lua_Integer)fields[f].v);
        lua_setfield(L, -2, fields[f].name);
      }
    }
    lua_setfield(L, -2, sm[k].name);
  }
  lua_setfield(L, -2, "state");
}

static int l_job_stats(lua_State *L)
{
  ljob *j = check_job(L, 1);
  int n = eddy_job_vertex_count(j->job);
  lua_createtable(L, n, 0);
  for (int vi = 0; vi < n; vi++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, j->vertices[vi]->name);
    lua_setfield(L, -2, "name");
    lua_newtable(L);
    eddy_task_stats st;
    for (int i = 0; eddy_job_task_stats(j->job, vi, i, &st) == EDDY_OK; i++) {
      lua_createtable(L, 0, 2);
      lua_pushinteger(L, (lua_Integer)st.records_in);
      lua_setfield(L, -2, "records_in");
      lua_pushinteger(L, (lua_Integer)st.records_out);
      lua_setfield(L, -2, "records_out");
      push_state_metrics(L, j->job, vi, i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "subtasks");
    lua_rawseti(L, -2, vi + 1);
  }
  return 1;
}

void eddy_open_job(lua_State *L, int ctx)
{
  static const luaL_Reg job_meta[] = {{"__close", job_gc}, {"__gc", job_gc}, {NULL, NULL}};
  static const luaL_Reg job_methods[] = {
      {"add_vertex", l_job_add_vertex}, {"checkpoints", l_job_checkpoints},
      {"connect", l_job_connect}, {"enable_checkpoints", l_job_enable_checkpoints},
      {"next_checkpoint_id", l_job_next_checkpoint_id}, {"restore", l_job_restore},
      {"checkpoint_failures", l_job_checkpoint_failures}, {"savepoint", l_job_savepoint},
      {"stop_with_savepoint_at_end", l_job_stop_at_end}, {"cancel", l_job_cancel},
      {"stopped", l_job_stopped},
      {"run", l_job_run}, {"stats", l_job_stats},
      {"use_manual_clock", l_job_use_manual_clock}, {NULL, NULL}};
  static const luaL_Reg task_methods[] = {
      {"emit_status", l_task_emit_status}, {"emit_watermark", l_task_emit_watermark},
      {"emitter", l_task_emitter}, {"index", l_task_index},
      {"key_groups", l_task_key_groups}, {"name", l_task_name},
      {"now", l_task_now}, {"parallelism", l_task_parallelism},
      {"set_timestamp", l_task_set_timestamp}, {"timestamp", l_task_timestamp},
      {"wait_until", l_task_wait_until}, {"wake_at", l_task_wake_at},
      {"watermark", l_task_watermark}, {NULL, NULL}};
  luaL_newmetatable(L, JOB_MT);
  eddy_lua_setfuncs(L, job_meta, ctx);
  lua_newtable(L);
  eddy_lua_setfuncs(L, job_methods, ctx);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, TASK_MT);
  lua_newtable(L);
  eddy_lua_setfuncs(L, task_methods, ctx);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg funcs[] = {{"job_new", l_job_new}, {NULL, NULL}};
  eddy_lua_setfuncs(L, funcs, ctx);
}
