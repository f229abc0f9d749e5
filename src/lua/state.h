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

#endif
