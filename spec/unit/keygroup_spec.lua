-- Key groups through the module, against the test vectors of SEMANTICS.md
-- section 1 (computed with Java semantics): a key lands in the key group,
-- and subtask, that Flink would give it.

local eddy = require "eddy"

describe("eddy.key_group", function()
  it("places integer keys as Flink places Long keys", function()
    local want = { 86, 127, 113, 7, 126 }
    local p2 = { 1, 1, 1, 0, 1 }
    local p4 = { 2, 3, 3, 0, 3 }
    for k = 1, 5 do
      local kg = eddy.key_group(k)
      assert.are.equal(want[k], kg)
      assert.are.equal(p2[k], eddy.operator_index(kg, 128, 2))
      assert.are.equal(p4[k], eddy.operator_index(kg, 128, 4))
    end
  end)

  it("places string keys as Flink places String keys", function()
    local cases = {
      { "a", 81, 19409 }, { "hello", 35, 31395 }, { "key-1", 54, 23094 }, { "user_42", 42, 28714 },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], eddy.key_group(c[1]))
      assert.are.equal(c[2], eddy.key_group(c[1], 128))
      assert.are.equal(c[3], eddy.key_group(c[1], 32768))
    end
  end)

  it("hashes sequences like Flink tuples and refuses nil", function()
    -- Tuple2("a", 1L).hashCode() = 31 * 97 + 1 = 3008
    local t = eddy.key_group { "a", 1 }
    assert.is_true(t >= 0 and t < 128)
    assert.are.equal(eddy.key_group { "a", 1 }, eddy.key_group { "a", 1 })
    assert.has_error(function() eddy.key_group(nil) end, "eddy.key_group: a key must not be nil")
    assert.has_error(function() eddy.key_group { f = print } end,
      "eddy.key_group: cannot store a function at key.f")
  end)
end)

describe("key-group ranges", function()
  it("splits key groups as Flink's range formula does", function()
    local want = { { 0, 42 }, { 43, 85 }, { 86, 127 } }
    for i = 0, 2 do
      assert.are.same(want[i + 1], { eddy.key_group_range(128, 3, i) })
    end
    local want10 = { { 0, 2 }, { 3, 4 }, { 5, 7 }, { 8, 9 } }
    for i = 0, 3 do
      assert.are.same(want10[i + 1], { eddy.key_group_range(10, 4, i) })
    end
    local idx = { 0, 0, 0, 1, 1, 2, 2, 2, 3, 3 }
    for kg = 0, 9 do
      assert.are.equal(idx[kg + 1], eddy.operator_index(kg, 10, 4))
    end
  end)

  it("refuses impossible arguments with a message", function()
    assert.has_error(function() eddy.key_group_range(128, 0, 0) end)
    assert.has_error(function() eddy.key_group_range(128, 200, 0) end)
    assert.has_error(function() eddy.key_group_range(128, 2, 2) end)
    assert.has_error(function() eddy.operator_index(128, 128, 2) end)
  end)
end)
