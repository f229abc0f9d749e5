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

#endif
