/*
 * Lua values <-> canonical MessagePack (util/msgpack.h). A table whose keys
 * are exactly 1..n is an array; any other table is a map whose pairs are
 * sorted by their encoded keys; an empty table is an empty array. Integers
 * stay integers and floats stay floats, so values round-trip exactly and
 * equal values give equal bytes.
 *
 * The encoder does not raise for a value that cannot be stored: it returns
 * a code and a message with the path to the culprit, so that callers in the
 * middle of engine work can clean up before the binding raises.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lua/binding.h"
#include "util/msgpack.h"

void eddy_codec_init(eddy_codec *c)
{
  eddy_buf_init(&c->out);
  eddy_buf_init(&c->scratch);
  eddy_buf_init(&c->pairs);
  eddy_buf_init(&c->path);
}

void eddy_codec_free(eddy_codec *c)
{
  eddy_buf_free(&c->out);
  eddy_buf_free(&c->scratch);
  eddy_buf_free(&c->pairs);
  eddy_buf_free(&c->path);
}

/* One step of the path from the root to the value being encoded. String
 * keys point into Lua strings that stay on the stack while we are below. */
typedef struct path_seg {
  int type; /* LUA_TSTRING, LUA_TNUMBER (integer or float), or another type */
  const char *s;
  size_t len;
  lua_Integer i;
  lua_Number f;
  int is_int;
} path_seg;

typedef struct encoder {
  lua_State *L;
  eddy_codec *c;
  eddy_err *err;
  const char *root;
  int depth;
  int code;                /* of a failure */
  const char *failed_what; /* set with a failure of the value itself */
  char what_buf[64];
  const void *ancestors[EDDY_MP_MAX_DEPTH + 1];
} encoder;

static int is_identifier(const char *s, size_t n)
{
  static const char *const keywords[] = {
      "and", "break", "do", "else", "elseif", "end", "false", "for",
      "function", "goto", "if", "in", "local", "nil", "not", "or",
      "repeat", "return", "then", "true", "until", "while"};
  if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!(ch == '_' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
          (ch >= 'A' && ch <= 'Z')))
      return 0;
  }
  for (size_t k = 0; k < sizeof keywords / sizeof keywords[0]; k++)
    if (strlen(keywords[k]) == n && memcmp(keywords[k], s, n) == 0)
      return 0;
  return 1;
}

/* Renders root.a[3]["odd key"] into buf. */
static void render_path(const encoder *e, char *buf, size_t size)
{
  size_t n = 0;
  int w = snprintf(buf, size, "%s", e->root);
  n = w > 0 ? (size_t)w : 0;
  const path_seg *segs = (const path_seg *)e->c->path.data;
  size_t nsegs = e->c->path.len / sizeof(path_seg);
  for (size_t j = nsegs; j > 0 && n < size; j--) {
    const path_seg *p = &segs[j - 1];
    if (p->type == LUA_TSTRING && is_identifier(p->s, p->len))
      w = snprintf(buf + n, size - n, ".%.*s", (int)(p->len > 64 ? 64 : p->len), p->s);
    else if (p->type == LUA_TSTRING)
      w = snprintf(buf + n, size - n, "[\"%.*s%s\"]", (int)(p->len > 40 ? 40 : p->len),
                   p->s, p->len > 40 ? "..." : "");
    else if (p->type == LUA_TNUMBER && p->is_int)
      w = snprintf(buf + n, size - n, "[%lld]", (long long)p->i);
    else if (p->type == LUA_TNUMBER)
      w = snprintf(buf + n, size - n, "[%.14g]", (double)p->f);
    else if (p->type == LUA_TBOOLEAN)
      w = snprintf(buf + n, size - n, "[%s]", p->i ? "true" : "false");
    else
      w = snprintf(buf + n, size - n, "[<%s key>]", lua_typename(e->L, p->type));
    if (w < 0)
      break;
    n += (size_t)w;
  }
}

/* The message names the path from the root to the culprit. The path is
 * collected only on failure: each level adds its key while the error
 * unwinds (innermost first), so encoding a good value pays nothing for it. */
static int fail(encoder *e, int code, const char *what)
{
  e->failed_what = what;
  return code;
}

static void render_failure(encoder *e)
{
  char path[512];
  render_path(e, path, sizeof path);
  eddy_seterr(e->err, e->code, "cannot store %s at %s", e->failed_what, path);
}

/* Adds the key at idx to the path of a failure that is unwinding. Without
 * memory for it the message just names less of the path. */
static int push_seg(encoder *e, int idx, int rc)
{
  path_seg seg;
  memset(&seg, 0, sizeof seg);
  seg.type = lua_type(e->L, idx);
  if (seg.type == LUA_TSTRING) {
    seg.s = lua_tolstring(e->L, idx, &seg.len);
  } else if (seg.type == LUA_TNUMBER) {
    seg.is_int = lua_isinteger(e->L, idx);
    if (seg.is_int)
      seg.i = lua_tointeger(e->L, idx);
    else
      seg.f = lua_tonumber(e->L, idx);
  } else if (seg.type == LUA_TBOOLEAN) {
    seg.i = lua_toboolean(e->L, idx);
  }
  if (e->failed_what != NULL)
    eddy_buf_append(&e->c->path, &seg, sizeof seg);
  return rc;
}

static int encode_value(encoder *e, int idx);

/* Keys exactly 1..n with n = rawlen: encode as an array. */
static int is_sequence(lua_State *L, int idx, lua_Unsigned n)
{
  lua_Unsigned count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1 || (lua_Unsigned)k > n) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
  }
  return count == n;
}

static int encode_table(encoder *e, int idx)
{
  lua_State *L = e->L;
  eddy_buf *out = &e->c->out;
  int rc;
  if (e->depth >= EDDY_MP_MAX_DEPTH) {
    snprintf(e->what_buf, sizeof e->what_buf, "a value nested deeper than %d levels",
             EDDY_MP_MAX_DEPTH);
    return fail(e, EDDY_ELIMIT, e->what_buf);
  }
  const void *self = lua_topointer(L, idx);
  for (int i = 0; i < e->depth; i++)
    if (e->ancestors[i] == self)
      return fail(e, EDDY_EINVAL, "a table that contains itself");
  e->ancestors[e->depth++] = self;
  luaL_checkstack(L, 6, "encoding a nested value");

  lua_Unsigned n = lua_rawlen(L, idx);
  if (n > 0 && n <= UINT32_MAX && is_sequence(L, idx, n)) {
    if ((rc = eddy_mp_write_array(out, (uint32_t)n)) != EDDY_OK)
      goto oom;
    for (lua_Unsigned i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, (lua_Integer)i);
      if ((rc = encode_value(e, lua_gettop(L))) != EDDY_OK) {
        lua_pushinteger(L, (lua_Integer)i);
        return push_seg(e, -1, rc);
      }
      lua_pop(L, 1);
    }
    e->depth--;
    return EDDY_OK;
  }

  size_t start = out->len;
  size_t base = e->c->pairs.len / sizeof(eddy_mp_pair);
  uint32_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    eddy_mp_pair pair;
    pair.off = out->len;
    if ((rc = encode_value(e, top - 1)) != EDDY_OK)
      return push_seg(e, top - 1, rc);
    pair.key_len = out->len - pair.off;
    if ((rc = encode_value(e, top)) != EDDY_OK)
      return push_seg(e, top - 1, rc);
    pair.len = out->len - pair.off;
    if (eddy_buf_append(&e->c->pairs, &pair, sizeof pair) != EDDY_OK)
      goto oom;
    lua_pop(L, 1);
    count++;
  }
  if (count == 0) {
    rc = eddy_mp_write_array(out, 0); /* the one encoding of an empty table */
  } else {
    eddy_mp_pair *pairs = (eddy_mp_pair *)e->c->pairs.data + base;
    rc = eddy_mp_finish_map(out, start, pairs, count, &e->c->scratch);
    if (rc == EDDY_EINVAL)
      return fail(e, rc, "a table with two keys that encode alike");
  }
  e->c->pairs.len = base * sizeof(eddy_mp_pair);
  if (rc != EDDY_OK)
    goto oom;
  e->depth--;
  return EDDY_OK;
oom:
  return eddy_seterr(e->err, EDDY_ENOMEM, "out of memory encoding %s", e->root);
}

static int encode_value(encoder *e, int idx)
{
  lua_State *L = e->L;
  eddy_buf *out = &e->c->out;
  int rc;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    rc = eddy_mp_write_nil(out);
    break;
  case LUA_TBOOLEAN:
    rc = eddy_mp_write_bool(out, lua_toboolean(L, idx));
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      rc = eddy_mp_write_int(out, (int64_t)lua_tointeger(L, idx));
    else
      rc = eddy_mp_write_float(out, (double)lua_tonumber(L, idx));
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    rc = eddy_mp_write_str(out, s, len);
    if (rc == EDDY_ELIMIT)
      return fail(e, rc, "a string longer than 4 GiB");
    break;
  }
  case LUA_TTABLE:
    return encode_table(e, idx);
  default: {
    int t = lua_type(L, idx);
    snprintf(e->what_buf, sizeof e->what_buf, "a %s",
             t == LUA_TLIGHTUSERDATA ? "userdata" : lua_typename(L, t));
    return fail(e, EDDY_EINVAL, e->what_buf);
  }
  }
  if (rc != EDDY_OK)
    return eddy_seterr(e->err, rc, "out of memory encoding %s", e->root);
  return EDDY_OK;
}

int eddy_lua_encode(lua_State *L, int idx, eddy_codec *c, const char *root,
                    eddy_err *err)
{
  encoder e;
  e.L = L;
  e.c = c;
  e.err = err;
  e.root = root;
  e.depth = 0;
  e.code = EDDY_OK;
  e.failed_what = NULL;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  size_t start = c->out.len;
  eddy_buf_reset(&c->path);
  eddy_buf_reset(&c->pairs);
  int rc = encode_value(&e, idx);
  if (rc != EDDY_OK) {
    c->out.len = start;
    if (e.failed_what != NULL) {
      e.code = rc;
      render_failure(&e);
    }
  }
  lua_settop(L, top);
  return rc;
}

/* ---- decoding ---- */

typedef struct decoder {
  lua_State *L;
  eddy_mp_reader r;
  eddy_err *err;
} decoder;

static int decode_fail(decoder *d, int rc)
{
  size_t at = eddy_mp_reader_offset(&d->r);
  switch (rc) {
  case EDDY_EEOF:
  case EDDY_EFORMAT:
    return eddy_seterr(d->err, EDDY_ECORRUPT, "truncated or invalid value at byte %zu", at);
  case EDDY_EUNSUPPORTED:
    return eddy_seterr(d->err, EDDY_ECORRUPT, "unsupported MessagePack ext type at byte %zu", at);
  case EDDY_ELIMIT:
    return eddy_seterr(d->err, EDDY_ECORRUPT, "integer out of range at byte %zu", at);
  default:
    return eddy_seterr(d->err, rc, "cannot decode the value at byte %zu", at);
  }
}

static int decode_value(decoder *d, int depth)
{
  lua_State *L = d->L;
  eddy_mp_item it;
  int rc = eddy_mp_read(&d->r, &it);
  if (rc != EDDY_OK)
    return decode_fail(d, rc);
  switch (it.type) {
  case EDDY_MP_NIL: lua_pushnil(L); return EDDY_OK;
  case EDDY_MP_BOOL: lua_pushboolean(L, it.v.b); return EDDY_OK;
  case EDDY_MP_INT: lua_pushinteger(L, (lua_Integer)it.v.i); return EDDY_OK;
  case EDDY_MP_FLOAT: lua_pushnumber(L, (lua_Number)it.v.f); return EDDY_OK;
  case EDDY_MP_STR: lua_pushlstring(L, it.v.s.ptr, it.v.s.len); return EDDY_OK;
  case EDDY_MP_ARRAY:
  case EDDY_MP_MAP:
    break;
  }
  if (depth >= EDDY_MP_MAX_DEPTH)
    return eddy_seterr(d->err, EDDY_ECORRUPT, "value nested deeper than %d levels at byte %zu",
                       EDDY_MP_MAX_DEPTH, eddy_mp_reader_offset(&d->r));
  luaL_checkstack(L, 4, "decoding a nested value");
  /* Size hints come from the data: cap them by what the input can hold,
   * so a lying header cannot make us allocate gigabytes. */
  size_t left = (size_t)(d->r.end - d->r.p);
  uint32_t n = it.v.n;
  if (it.type == EDDY_MP_ARRAY) {
    lua_createtable(L, (int)(n < left ? n : left), 0);
    for (uint32_t i = 1; i <= n; i++) {
      if ((rc = decode_value(d, depth + 1)) != EDDY_OK) {
        lua_pop(L, 1);
        return rc;
      }
      if (lua_isnil(L, -1))
        lua_pop(L, 1); /* a hole: foreign data only, eddy never writes one */
      else
        lua_rawseti(L, -2, (lua_Integer)i);
    }
    return EDDY_OK;
  }
  lua_createtable(L, 0, (int)(n < left / 2 ? n : left / 2));
  for (uint32_t i = 0; i < n; i++) {
    if ((rc = decode_value(d, depth + 1)) != EDDY_OK) {
      lua_pop(L, 1);
      return rc;
    }
    if ((rc = decode_value(d, depth + 1)) != EDDY_OK) {
      lua_pop(L, 2);
      return rc;
    }
    if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2))) {
      lua_pop(L, 3);
      return eddy_seterr(d->err, EDDY_ECORRUPT, "a map key is nil or NaN before byte %zu",
                         eddy_mp_reader_offset(&d->r));
    }
    if (lua_isnil(L, -1))
      lua_pop(L, 2);
    else
      lua_rawset(L, -3);
  }
  return EDDY_OK;
}

int eddy_lua_decode(lua_State *L, const void *data, size_t len, size_t *used,
                    eddy_err *err)
{
  decoder d = {L, {0}, err};
  eddy_mp_reader_init(&d.r, data, len);
  int rc = decode_value(&d, 0);
  if (rc != EDDY_OK)
    return rc;
  size_t n = eddy_mp_reader_offset(&d.r);
  if (used != NULL) {
    *used = n;
  } else if (n != len) {
    lua_pop(L, 1);
    return eddy_seterr(err, EDDY_ECORRUPT, "%zu unexpected bytes after the value at byte %zu",
                       len - n, n);
  }
  return EDDY_OK;
}

int eddy_lua_decode_array(lua_State *L, const void *data, size_t len, eddy_err *err)
{
  lua_newtable(L);
  const unsigned char *p = data;
  lua_Integer i = 0;
  while (len > 0) {
    size_t used;
    int rc = eddy_lua_decode(L, p, len, &used, err);
    if (rc != EDDY_OK) {
      lua_pop(L, 1);
      return rc;
    }
    lua_rawseti(L, -2, ++i);
    p += used;
    len -= used;
  }
  return EDDY_OK;
}

int eddy_lua_raise(lua_State *L, const eddy_err *err)
{
  lua_pushstring(L, err->msg);
  return lua_error(L);
}

int eddy_lua_fail(lua_State *L, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* ---- the per-state codec and the module functions ---- */

#define BINDING_MT "eddy.Binding"

static int binding_gc(lua_State *L)
{
  eddy_binding *b = luaL_checkudata(L, 1, BINDING_MT);
  eddy_codec_free(&b->codec);
  return 0;
}

void eddy_lua_push_binding(lua_State *L)
{
  eddy_binding *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  eddy_codec_init(&b->codec);
  if (luaL_newmetatable(L, BINDING_MT)) {
    lua_pushcfunction(L, binding_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
}

void eddy_lua_setfuncs(lua_State *L, const luaL_Reg *funcs, int ctx)
{
  lua_pushvalue(L, ctx);
  luaL_setfuncs(L, funcs, 1);
}

/* eddy.encode(value) -> bytes */
static int l_encode(lua_State *L)
{
  luaL_checkany(L, 1);
  eddy_codec *c = eddy_lua_codec(L);
  eddy_err err;
  eddy_buf_reset(&c->out);
  if (eddy_lua_encode(L, 1, c, "value", &err) != EDDY_OK)
    return luaL_error(L, "eddy.encode: %s", err.msg);
  lua_pushlstring(L, (const char *)c->out.data, c->out.len);
  return 1;
}

/* eddy.decode(bytes) -> value */
static int l_decode(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  eddy_err err;
  if (eddy_lua_decode(L, s, len, NULL, &err) != EDDY_OK)
    return luaL_error(L, "eddy.decode: %s", err.msg);
  return 1;
}

void eddy_open_codec(lua_State *L, int ctx)
{
  static const luaL_Reg funcs[] = {
      {"decode", l_decode},
      {"encode", l_encode},
      {NULL, NULL}};
  eddy_lua_setfuncs(L, funcs, ctx);
}
