/*
 * Keyed state userdata shared with the job binding, which creates a keyed
 * context per keyed subtask and hands it to Lua.
 */
#ifndef EDDY_LUA_STATE_H
#define EDDY_LUA_STATE_H

#include <lua.h>

#include "state/keyed.h"

/* Pushes a new, empty "eddy.Keyed" userdata and returns the slot for its
 * context: whatever is stored there is owned by the userdata (freed by its
 * __gc), so storing right after creating cannot leak if Lua raises. */
eddy_keyed **eddy_lua_push_keyed(lua_State *L);

/* The context of the "eddy.Keyed" at idx; raises if closed or wrong type. */
eddy_keyed *eddy_lua_check_keyed(lua_State *L, int idx);

/*
 * Makes the backend that the value at idx asks for, for the key groups of
 * cfg: nil or "heap" (the heap backend), "rocksdb", or a state_backend
 * table as eddy.config normalises it ({type =, dir =, predefined =,
 * options = {...}}). A RocksDB backend's working folder gets the given
 * name in the table's dir (NULL: a unique one). Raises for a value of the
 * wrong shape (before anything is made); an expected failure (a folder
 * that cannot be written or is locked) is returned with its message in
 * err.
 */
int eddy_lua_backend_new(lua_State *L, int idx, const eddy_backend_config *cfg,
                         const char *name, eddy_backend **out, eddy_err *err);

/* The same with a memory budget shared with other backends (from
 * eddy_lua_rocksdb_memory); eddy_lua_backend_new gives a RocksDB backend a
 * budget of its own when the table bounds memory. */
int eddy_lua_backend_new_shared(lua_State *L, int idx, const eddy_backend_config *cfg,
                                const char *name, eddy_rocksdb_memory *memory,
                                eddy_backend **out, eddy_err *err);

/* The memory budget the state_backend table at idx asks RocksDB backends
 * to share (memory.managed, the default, or memory.fixed_per_slot), for
 * `sharers` backends; *out NULL when it asks for none (heap, or memory
 * not bounded). */
int eddy_lua_rocksdb_memory(lua_State *L, int idx, int sharers, eddy_rocksdb_memory **out,
                            eddy_err *err);

#endif
