-- Operator state through savepoints and rescaling: list state is cut into
-- contiguous chunks, union state goes to every subtask (SEMANTICS.md §6).

local run = require "run"

-- Every subtask keeps the records it saw in a list state and in a union
-- list state, and says what it got back when restored.
local JOB = [[
local count, savepoint = ...
local job = eddy.job { name = "opstate" }
local items = {}
for i = 1, tonumber(count) do items[i] = i end
job:from_collection(items)
  :rebalance()
  :process("keep", {
    initialize_state = function(ctx)
      if ctx:is_restored() then
        local split = ctx:operator_list_state("seen"):get()
        local union = ctx:union_list_state("everyone"):get()
        table.sort(union)
        print(("subtask %d: split %s; union %d"):format(ctx:subtask(),
          table.concat(split, ","), #union))
      end
    end,
    process = function(ctx, x)
      ctx:operator_list_state("seen"):add(x)
      ctx:union_list_state("everyone"):add(x)
    end,
  })
  :sink(function() end)
local result = job:run { savepoint = savepoint }
io.stderr:write("savepoint: ", result.savepoint, "\n")
]]

describe("operator state", function()
  after_each(run.cleanup)

  it("is redistributed as Flink does when the parallelism changes", function()
    local dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", JOB)
    local function eddy(p, count, restore)
      local out, err, code = run.sh(("%s run -p %d %s %s %d %s"):format(run.quote(run.exe), p,
        restore and ("-s " .. run.quote(restore)) or "", run.quote(script), count,
        run.quote(dir .. "/sp")))
      assert.equal(0, code, err)
      local lines = run.lines(out)
      table.sort(lines)
      return lines, err:match("savepoint: (%S+)")
    end
    -- 2 subtasks: round robin gives subtask 0 the odd records, 1 the even
    local _, sp = eddy(2, 7, nil)
    -- 7 elements, 0's four then 1's three, in chunks of 3, 2, 2
    local lines, sp3 = eddy(3, 0, sp)
    assert.are.same({
      "subtask 0: split 1,3,5; union 7",
      "subtask 1: split 7,2; union 7",
      "subtask 2: split 4,6; union 7",
    }, lines)
    -- back to 2: 3 + 2 + 2 elements in old-subtask order, cut 4 and 3;
    -- each of the 3 subtasks stored all 7 union entries, and a restore
    -- gives everyone every entry stored: 21 (Flink does the same)
    lines = eddy(2, 0, sp3)
    assert.are.same({
      "subtask 0: split 1,3,5,7; union 21",
      "subtask 1: split 2,4,6; union 21",
    }, lines)
  end)
end)
