-- eddy.inspect: the pretty printer behind the REPL, stream:print and error
-- messages. Values come out as Lua literals, so a result can be pasted back
-- into the REPL, and the output never depends on pairs order (keys are
-- sorted), so specs and workshop handouts can compare it as text.
--
--   inspect(value [, opts]) -> string
--   opts.width   columns a line may take (default 80)
--   opts.depth   table levels shown; deeper tables print {...} (default 12)
--   opts.oneline never break lines
--
-- Raw access only (rawget, next): printing a value runs no __index or
-- __pairs, so it cannot fail or change anything. A table met again on the
-- current path prints <cycle>.

local type, tostring, rawget, next, pcall = type, tostring, rawget, next, pcall
local mtype, huge = math.type, math.huge
local concat, sort = table.concat, table.sort
local getmetatable = debug.getmetatable

local KEYWORDS = {}
for word in ([[and break do else elseif end false for function goto if in
               local nil not or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[word] = true
end

local function is_name(s)
  return s:find("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil and not KEYWORDS[s]
end

-- Columns a line takes: UTF-8 characters, not bytes.
local function cols(s)
  return utf8.len(s) or #s
end

---------------------------------------------------------------------------
-- Scalars

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r",
                  ['"'] = '\\"', ["\\"] = "\\\\" }
local SPECIAL = '[%c"\\\128-\255]'  -- what a plain "..." cannot hold as is

local function continuation(b)
  return b ~= nil and b >= 0x80 and b <= 0xBF
end

-- Length of the well-formed UTF-8 sequence at i (its lead byte >= 0x80), or
-- nil: overlong forms, surrogates and code points past U+10FFFF are not.
local function sequence_length(s, i)
  local c1, c2, c3, c4 = s:byte(i, i + 3)
  if c1 >= 0xC2 and c1 <= 0xDF then
    if continuation(c2) then return 2 end
  elseif c1 >= 0xE0 and c1 <= 0xEF then
    local lo, hi = 0x80, 0xBF
    if c1 == 0xE0 then lo = 0xA0 elseif c1 == 0xED then hi = 0x9F end
    if c2 and c2 >= lo and c2 <= hi and continuation(c3) then return 3 end
  elseif c1 >= 0xF0 and c1 <= 0xF4 then
    local lo, hi = 0x80, 0xBF
    if c1 == 0xF0 then lo = 0x90 elseif c1 == 0xF4 then hi = 0x8F end
    if c2 and c2 >= lo and c2 <= hi and continuation(c3) and continuation(c4) then
      return 4
    end
  end
  return nil
end

-- A double-quoted literal: readable escapes, \xNN for control bytes and
-- bytes that are not UTF-8, valid UTF-8 as it is.
local function quote(s)
  if not s:find(SPECIAL) then return '"' .. s .. '"' end
  local out, i = {}, 1
  while true do
    local j = s:find(SPECIAL, i)
    if not j then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, j - 1)
    local c = s:byte(j)
    local len = c >= 0x80 and sequence_length(s, j)
    if len then
      out[#out + 1] = s:sub(j, j + len - 1)
      i = j + len
    else
      out[#out + 1] = ESCAPES[s:sub(j, j)] or ("\\x%02X"):format(c)
      i = j + 1
    end
  end
  return '"' .. concat(out) .. '"'
end

-- Integers as they are; floats as tostring shows them when that reads back
-- as the same number, else with the digits it takes (0.1 + 0.2 is not 0.3),
-- always recognisable as floats ("1.0"); the infinities and NaN as the
-- expressions that make them.
local function number(v)
  if mtype(v) == "integer" then
    -- -9223372036854775808 would read back as a float
    return v == math.mininteger and "math.mininteger" or tostring(v)
  end
  if v ~= v then return "0/0" end
  if v == huge then return "1/0" end
  if v == -huge then return "-1/0" end
  local s = tostring(v)
  if tonumber(s) ~= v then
    for digits = 15, 17 do
      s = ("%." .. digits .. "g"):format(v)
      if tonumber(s) == v then break end
    end
  end
  if not s:find("[.eEn]") then s = s .. ".0" end
  return s
end

-- tostring that cannot fail: a broken __tostring must not hide the value.
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return type(v) .. ": ?"
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then return number(v) end
  if t == "nil" or t == "boolean" then return tostring(v) end
  return safe_tostring(v)  -- function, thread, userdata (__tostring, __name)
end

---------------------------------------------------------------------------
-- Keys: the sequence part in order, then integers ascending, strings
-- alphabetically, then the rest (floats, booleans, others by tostring).

local function key_rank(k)
  local t = type(k)
  if t == "number" then return mtype(k) == "integer" and 1 or 3 end
  if t == "string" then return 2 end
  if t == "boolean" then return 4 end
  return 5
end

local function key_less(a, b)
  local ra, rb = key_rank(a), key_rank(b)
  if ra ~= rb then return ra < rb end
  if ra <= 3 then return a < b end
  if ra == 4 then return b and not a end
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  return safe_tostring(a) < safe_tostring(b)
end

-- n, the length of the sequence part (1..n, no holes), and the other keys
-- sorted.
local function fields(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  for k in next, t do
    if not (mtype(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  sort(keys, key_less)
  return n, keys
end

---------------------------------------------------------------------------
-- Tables

-- How a table prints when not field by field, or nil: with its __tostring,
-- as <cycle>, or as {...} past the depth limit ({} when there is nothing
-- to hide).
local function opaque(t, st, depth)
  local mt = getmetatable(t)
  if type(mt) == "table" and rawget(mt, "__tostring") ~= nil then
    return safe_tostring(t)
  end
  if st.path[t] then return "<cycle>" end
  if next(t) == nil then return "{}" end
  if depth > st.depth then return "{...}" end
  return nil
end

local flat

local function key_text(k, st, depth)
  if type(k) == "string" and is_name(k) then return k .. " = " end
  return "[" .. flat(k, st, depth + 1, huge) .. "] = "
end

-- The i-th field of t (fields gave n and keys): its value, and the text
-- before it ("" for the sequence part).
local function field(t, n, keys, i, st, depth)
  if i <= n then return rawget(t, i), "" end
  local k = keys[i - n]
  return rawget(t, k), key_text(k, st, depth)
end

-- The one-line form of v, or nil when it takes more than budget columns
-- (only tables give up: a long scalar is what it is).
function flat(v, st, depth, budget)
  if type(v) ~= "table" then return scalar(v) end
  local s = opaque(v, st, depth)
  if s then return s end
  if budget < 2 then return nil end
  local n, keys = fields(v)
  local parts, used = {}, 2  -- the braces
  st.path[v] = true
  for i = 1, n + #keys do
    local value, prefix = field(v, n, keys, i, st, depth)
    local room = budget - used - cols(prefix) - (i > 1 and 2 or 0)
    local text = flat(value, st, depth + 1, room)
    if text then
      text = prefix .. text
      used = used + cols(text) + (i > 1 and 2 or 0)
    end
    if not text or used > budget then
      st.path[v] = nil
      return nil
    end
    parts[i] = text
  end
  st.path[v] = nil
  return "{" .. concat(parts, ", ") .. "}"
end

-- v in room columns, on several lines when one is not enough: one field per
-- line, indented by two more than the table.
local function render(v, st, depth, indent, room)
  local s = flat(v, st, depth, room)
  if s then return s end
  local n, keys = fields(v)  -- flat only gives up on a table it can open
  local count = n + #keys
  local pad = (" "):rep(indent + 2)
  local lines = {}
  st.path[v] = true
  for i = 1, count do
    local value, prefix = field(v, n, keys, i, st, depth)
    local comma = i < count and "," or ""
    local width = st.width - #pad - cols(prefix) - #comma
    lines[i] = pad .. prefix .. render(value, st, depth + 1, indent + 2, width) .. comma
  end
  st.path[v] = nil
  return "{\n" .. concat(lines, "\n") .. "\n" .. (" "):rep(indent) .. "}"
end

local function option(opts, name, default)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" then
    error(("eddy.inspect: opts.%s: expected a number, got %s"):format(name, type(v)), 3)
  end
  return v
end

return function(value, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("eddy.inspect: opts: expected a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  local st = { path = {}, depth = option(opts, "depth", 12), width = option(opts, "width", 80) }
  if opts.oneline then return flat(value, st, 1, huge) end
  return render(value, st, 1, 0, st.width)
end
