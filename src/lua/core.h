/*
 * The C half of the eddy Lua module. lib/eddy/core.so exports
 * luaopen_eddy_core for stock interpreters; bin/eddy links the same code
 * and preloads it as "eddy.core".
 */
#ifndef EDDY_LUA_CORE_H
#define EDDY_LUA_CORE_H

#include <lua.h>

int luaopen_eddy_core(lua_State *L);

#endif
