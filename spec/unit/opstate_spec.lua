-- Operator state redistribution on restore (SEMANTICS.md section 6).

local opstate = require "eddy.opstate"

local function split(...)
  local per = {}
  for i, items in ipairs { ... } do
    per[i] = { s = { mode = "split", items = items } }
  end
  return per
end

local function range(a, b)
  local t = {}
  for i = a, b do
    t[#t + 1] = i
  end
  return t
end

local function counts(new, name)
  local c = {}
  for i, st in ipairs(new) do
    c[i] = st[name] and #st[name].items or 0
  end
  return c
end

describe("operator state redistribution", function()
  it("cuts split state into contiguous chunks, the remainder first, 2 -> 3", function()
    local new = opstate.redistribute(split(range(1, 4), range(5, 7)), 2, 3)
    assert.are.same({ 1, 2, 3 }, new[1].s.items)
    assert.are.same({ 4, 5 }, new[2].s.items)
    assert.are.same({ 6, 7 }, new[3].s.items)
  end)

  it("concatenates in old-subtask order, 3 -> 2", function()
    local new = opstate.redistribute(split({ "a", "b" }, { "c" }, { "d", "e" }), 3, 2)
    assert.are.same({ "a", "b", "c" }, new[1].s.items)
    assert.are.same({ "d", "e" }, new[2].s.items)
  end)

  it("starts the next state at the first subtask that got only the base share", function()
    -- two states of 7 elements over 3 subtasks: 3,2,2 then, starting at
    -- subtask 2 (the first with 2), 3 for subtask 2 and 2 for 3 and 1
    local old = {
      { a = { mode = "split", items = range(1, 7) }, b = { mode = "split", items = range(1, 7) } },
    }
    local new = opstate.redistribute(old, 1, 3)
    assert.are.same({ 3, 2, 2 }, counts(new, "a"))
    assert.are.same({ 2, 3, 2 }, counts(new, "b"))
    assert.are.same({ 1, 2, 3 }, new[2].b.items)
    assert.are.same({ 4, 5 }, new[3].b.items)
    assert.are.same({ 6, 7 }, new[1].b.items)
  end)

  it("keeps each subtask's own split state when the parallelism is the same", function()
    local new = opstate.redistribute(split({ 1 }, { 2, 3 }), 2, 2)
    assert.are.same({ 1 }, new[1].s.items)
    assert.are.same({ 2, 3 }, new[2].s.items)
  end)

  it("gives every subtask all union entries", function()
    local old = { { u = { mode = "union", items = { 1, 2 } } }, { u = { mode = "union", items = { 3 } } } }
    for _, p in ipairs { 1, 2, 3 } do
      local new = opstate.redistribute(old, 2, p)
      for i = 1, p do
        assert.are.same({ 1, 2, 3 }, new[i].u.items)
      end
    end
  end)

  it("gives new subtask i the broadcast copy of old subtask i mod p", function()
    local old = { { b = { mode = "broadcast", items = { "x" } } }, { b = { mode = "broadcast", items = { "y" } } } }
    local new = opstate.redistribute(old, 2, 3)
    assert.are.same({ "x" }, new[1].b.items)
    assert.are.same({ "y" }, new[2].b.items)
    assert.are.same({ "x" }, new[3].b.items)
  end)

  it("list states add, get, update and clear, and refuse nil", function()
    local store = opstate.new_store()
    local s = store:list("buffer", "split", "ctx:operator_list_state")
    s:add(1)
    s:add_all { 2, 3 }
    assert.are.same({ 1, 2, 3 }, s:get())
    s:update { 9 }
    assert.are.same({ 9 }, s:get())
    assert.has_error(function() s:add(nil) end)
    assert.has_error(function() store:list("buffer", "union", "ctx:union_list_state") end)
    assert.are.same({ buffer = { mode = "split", items = { 9 } } }, store:snapshot())
    s:clear()
    assert.are.same({}, s:get())
  end)

  it("broadcast states are maps with any storable key, read-only unless writable", function()
    local store = opstate.new_store()
    local writable = true
    local b = store:broadcast("rules", function() return writable end, "ctx:broadcast_state")
    assert.equal(b, store:broadcast("rules", function() return writable end, "ctx:broadcast_state"))
    b:put("a", 1)
    b:put({ 1, 2 }, "table key")
    b:put_all { b = 2 }
    assert.equal(1, b:get("a"))
    assert.equal("table key", b:get { 1, 2 }) -- by value, not identity
    assert.is_true(b:contains("b"))
    assert.is_false(b:contains("c"))
    b:put("a", 10)
    local n = 0
    for k, v in b:pairs() do
      n = n + 1
      if k == "a" then
        assert.equal(10, v)
      end
    end
    assert.equal(3, n)
    assert.equal(3, #b:keys())
    b:remove("b")
    -- in the order of the keys' encoding: an array before a string
    assert.are.same({ { 1, 2 }, "a" }, b:keys())
    assert.are.same({ "table key", 10 }, b:values())
    assert.error_matches(function() b:put("x", nil) end, "the value must not be nil")
    assert.error_matches(function() b:put(nil, 1) end, "the key must not be nil")
    assert.error_matches(function() b:put("f", print) end, "cannot be stored")
    writable = false
    assert.error_matches(function() b:put("z", 1) end, "read%-only in process")
    assert.error_matches(function() b:clear() end, "read%-only in process")
    assert.equal(10, b:get("a"))
    assert.error_matches(function() store:list("rules", "split", "ctx:operator_list_state") end,
      "already a broadcast state")
    -- a checkpoint holds the entries in a stable order, and they come back
    local snap = store:snapshot()
    assert.are.same({ rules = { mode = "broadcast", items = { { { 1, 2 }, "table key" }, { "a", 10 } } } },
      snap)
    local again = opstate.new_store(opstate.redistribute({ snap }, 1, 2)[2])
    local r = again:broadcast("rules", function() return true end, "ctx:broadcast_state")
    assert.equal("table key", r:get { 1, 2 })
    assert.is_false(r:is_empty())
    r:clear()
    assert.is_true(r:is_empty())
  end)
end)
