/*
 * What the binding files share: the Lua <-> MessagePack codec and the
 * registration functions each file contributes to eddy.core. Internal to
 * src/lua/.
 */
#ifndef EDDY_LUA_BINDING_H
#define EDDY_LUA_BINDING_H

#include <lua.h>
#include <lauxlib.h>

#include "util/buf.h"
#include "util/err.h"

/* Scratch space for encoding, reused across calls to avoid allocations. */
typedef struct eddy_codec {
  eddy_buf out;     /* the encoded bytes */
  eddy_buf scratch; /* for sorting map pairs */
  eddy_buf pairs;   /* stack of eddy_mp_pair across nesting levels */
  eddy_buf path;    /* stack of path segments, for messages */
} eddy_codec;

void eddy_codec_init(eddy_codec *c);
void eddy_codec_free(eddy_codec *c);

/*
 * Encodes the value at idx canonically, appending to c->out (the caller
 * resets it when it wants a fresh value). Never raises for a value that
 * cannot be stored: returns an error code with "cannot store a function at
 * <root>.handler" in err (root names the value, e.g. "value" or "key").
 * May raise only for out-of-memory inside Lua itself.
 */
int eddy_lua_encode(lua_State *L, int idx, eddy_codec *c, const char *root,
                    eddy_err *err);

/*
 * Decodes one value from data and pushes it. *used gets the bytes it took
 * (pass NULL to require that the value fills data exactly). Returns an error
 * code with a message naming the byte offset; pushes nothing then.
 */
int eddy_lua_decode(lua_State *L, const void *data, size_t len, size_t *used,
                    eddy_err *err);

/* Decodes a sequence of concatenated values into a new array table. */
int eddy_lua_decode_array(lua_State *L, const void *data, size_t len,
                          eddy_err *err);

/* Raise errors without a position: they come from the engine or from
 * eddy's own Lua code, where "plan.lua:255:" would only be noise. Methods a
 * user calls directly (state handles) use luaL_error instead, whose
 * position is the user's line. Call them only after cleanup. */
int eddy_lua_raise(lua_State *L, const eddy_err *err);
int eddy_lua_fail(lua_State *L, const char *fmt, ...);

/* The binding's context, one per Lua state, made by luaopen_eddy_core.
 * Every binding function carries it as upvalue 1 (as lua-cjson carries its
 * config), so the per-record paths reach it without a registry lookup. */
typedef struct eddy_binding {
  eddy_codec codec;
  /* the metatables of the state handle types, by eddy_state_kind, so that
   * a state method checks its receiver with one pointer comparison */
  const void *state_mt[5];
} eddy_binding;

void eddy_lua_push_binding(lua_State *L);
#define eddy_lua_binding(L) ((eddy_binding *)lua_touserdata((L), lua_upvalueindex(1)))
#define eddy_lua_codec(L) (&eddy_lua_binding(L)->codec)

/* luaL_setfuncs with the binding context at stack index ctx as upvalue 1. */
void eddy_lua_setfuncs(lua_State *L, const luaL_Reg *funcs, int ctx);

/* Registration of each binding file's functions and types; the eddy.core
 * table is at the top of the stack, the binding context at index ctx. */
void eddy_open_codec(lua_State *L, int ctx);
void eddy_open_state(lua_State *L, int ctx);
void eddy_open_job(lua_State *L, int ctx);
void eddy_open_io(lua_State *L, int ctx);
void eddy_open_checkpoint(lua_State *L, int ctx);
void eddy_open_snapshot_reader(lua_State *L, int ctx);

/* Pushes a table of what a checkpoint or savepoint is: path, name, id,
 * job, kind, time and job_name (when _metadata has it) (checkpoint.c). */
struct eddy_chk;
void eddy_lua_push_chk_summary(lua_State *L, struct eddy_chk *c);

/* Restores the keyed snapshot that reader r reads (a checkpoint's .keyed
 * file) into k, then closes r whatever happens (checkpoint.c). */
struct eddy_chk_reader;
struct eddy_keyed;
int eddy_lua_restore_keyed(struct eddy_keyed *k, struct eddy_chk_reader *r, eddy_err *err);
void eddy_open_control(lua_State *L, int ctx);

/* The control socket userdata at idx (control.c), for job:run(control). */
struct eddy_control *eddy_lua_check_control(lua_State *L, int idx);

#endif
