-- The state codec (eddy.encode / eddy.decode): canonical MessagePack,
-- exact round trips, and errors that name the path of what cannot be stored.

local eddy = require "eddy"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Deep equality that also tells integers from floats and -0.0 from 0.0.
local function same(a, b)
  if type(a) ~= type(b) then
    return false
  end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then
      return false
    end
    if a ~= a then
      return b ~= b
    end
    if a == 0 and math.type(a) == "float" then
      return 1 / a == 1 / b
    end
    return a == b
  end
  if type(a) ~= "table" then
    return a == b
  end
  for k, v in pairs(a) do
    if not same(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

describe("eddy.encode", function()
  it("writes integers in their shortest form and keeps floats float", function()
    assert.are.equal("00", hex(eddy.encode(0)))
    assert.are.equal("7f", hex(eddy.encode(127)))
    assert.are.equal("cc80", hex(eddy.encode(128)))
    assert.are.equal("ff", hex(eddy.encode(-1)))
    assert.are.equal("d0df", hex(eddy.encode(-33)))
    assert.are.equal("cf7fffffffffffffff", hex(eddy.encode(math.maxinteger)))
    assert.are.equal("d38000000000000000", hex(eddy.encode(math.mininteger)))
    assert.are.equal("cb3ff0000000000000", hex(eddy.encode(1.0)))
    assert.are.equal("c3", hex(eddy.encode(true)))
    assert.are.equal("a3616263", hex(eddy.encode("abc")))
    assert.are.equal("c0", hex(eddy.encode(nil)))
  end)

  it("writes sequences as arrays and other tables as maps sorted by key bytes", function()
    assert.are.equal("93010203", hex(eddy.encode { 1, 2, 3 }))
    assert.are.equal("90", hex(eddy.encode {}))
    -- "b" (a162) sorts before "aa" (a26161): shorter strings first
    assert.are.equal("82a162" .. "02" .. "a26161" .. "01", hex(eddy.encode { aa = 1, b = 2 }))
    -- {1, nil, 3} is not a sequence: a map of its two keys
    assert.are.equal("82010103" .. "03", hex(eddy.encode { [1] = 1, [3] = 3 }))
  end)

  it("gives equal bytes for equal values built in any order", function()
    local a, b = {}, {}
    local keys = {}
    for i = 1, 200 do
      keys[i] = "k" .. i
    end
    for i = 1, 200 do
      a[keys[i]] = i
    end
    for i = 200, 1, -1 do
      b[keys[i]] = i
    end
    a.nested = { x = 1, y = { 1, 2, { z = true } } }
    b.nested = { y = { 1, 2, { z = true } }, x = 1 }
    assert.are.equal(eddy.encode(a), eddy.encode(b))
  end)

  it("names the path of a value that cannot be stored", function()
    local cases = {
      { { handler = print }, "cannot store a function at value.handler" },
      { { items = { 1, 2, coroutine.create(print) } }, "cannot store a thread at value.items[3]" },
      { { ["odd key"] = { io.stdout } }, 'cannot store a userdata at value["odd key"][1]' },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(eddy.encode, c[1])
      assert.is_false(ok)
      assert.are.equal("eddy.encode: " .. c[2], err)
    end
  end)

  it("refuses cycles and over-deep nesting without crashing", function()
    local t = { a = {} }
    t.a.back = t
    local ok, err = pcall(eddy.encode, t)
    assert.is_false(ok)
    assert.matches("cannot store a table that contains itself at value.a.back", err, 1, true)
    local deep = {}
    local cur = deep
    for _ = 1, 150 do
      cur.next = {}
      cur = cur.next
    end
    ok, err = pcall(eddy.encode, deep)
    assert.is_false(ok)
    assert.matches("nested deeper than 100 levels", err, 1, true)
  end)
end)

describe("eddy.decode", function()
  it("reads what encode wrote", function()
    assert.are.same({ a = 1, b = { 1.5, "x", false } }, eddy.decode(eddy.encode { a = 1, b = { 1.5, "x", false } }))
    assert.are.equal("integer", math.type(eddy.decode(eddy.encode(3))))
    assert.are.equal("float", math.type(eddy.decode(eddy.encode(3.0))))
  end)

  it("reports damaged bytes instead of crashing", function()
    local good = eddy.encode { name = "x", list = { 1, 2, 3 } }
    for cut = 0, #good - 1 do
      local ok, err = pcall(eddy.decode, good:sub(1, cut))
      assert.is_false(ok)
      assert.matches("^eddy.decode: ", err)
    end
    local ok, err = pcall(eddy.decode, good .. "\1")
    assert.is_false(ok)
    assert.matches("unexpected bytes after the value", err, 1, true)
    ok, err = pcall(eddy.decode, "\xc1")
    assert.is_false(ok)
    ok, err = pcall(eddy.decode, "\xdd\xff\xff\xff\xff")
    assert.is_false(ok)
    assert.matches("truncated", err)
  end)
end)

describe("codec property", function()
  -- A fixed seed: the same 10,000 values on every run.
  local rng_state = 12345
  local function rand(n)
    rng_state = (rng_state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    return (rng_state >> 16) % n
  end

  local ints = { 0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -32768, -32769,
                 2 ^ 31 // 1, -(2 ^ 31 // 1), 2 ^ 32 // 1, math.maxinteger, math.mininteger }
  local floats = { 0.0, -0.0, 1.5, -2.25, 1e300, -1e-300, math.huge, -math.huge, 0 / 0, 3.0, 0.1 }

  local function random_string()
    local n = rand(8) == 0 and rand(300) or rand(12)
    local b = {}
    for i = 1, n do
      b[i] = string.char(rand(256))
    end
    return table.concat(b)
  end

  local function random_key()
    local r = rand(4)
    if r == 0 then
      return rand(1000) - 500
    elseif r == 1 then
      return rand(100) + 0.5
    elseif r == 2 then
      return rand(2) == 0
    end
    return random_string()
  end

  local random_value
  local function random_table(depth)
    local t = {}
    local kind = rand(3)
    if kind == 0 then
      for i = 1, rand(6) + 1 do
        t[i] = random_value(depth + 1)
      end
    else
      for _ = 1, rand(7) do
        t[random_key()] = random_value(depth + 1)
      end
      if kind == 2 then
        t[1] = random_value(depth + 1)
      end
    end
    return t
  end

  function random_value(depth)
    local r = rand(depth > 4 and 5 or 7)
    if r == 0 then
      return ints[rand(#ints) + 1] + (rand(2) == 0 and 0 or rand(1000))
    elseif r == 1 then
      return floats[rand(#floats) + 1]
    elseif r == 2 then
      return random_string()
    elseif r == 3 then
      return rand(2) == 0
    elseif r == 4 then
      return rand(1 << 40) - (1 << 39)
    end
    return random_table(depth)
  end

  -- The same value with its keys inserted in the opposite order.
  local function rebuilt(v)
    if type(v) ~= "table" then
      return v
    end
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    local t = {}
    for i = #keys, 1, -1 do
      t[keys[i]] = rebuilt(v[keys[i]])
    end
    return t
  end

  it("round-trips 10,000 random nested values exactly, with equal bytes for equal values", function()
    for i = 1, 10000 do
      local v = random_value(0)
      local bytes = eddy.encode(v)
      local back = eddy.decode(bytes)
      if not same(v, back) then
        error(("value %d did not round-trip: %s"):format(i, eddy.inspect(v)))
      end
      assert(eddy.encode(back) == bytes, "re-encoding changed the bytes")
      assert(eddy.encode(rebuilt(v)) == bytes, "insertion order changed the bytes")
    end
  end)
end)
