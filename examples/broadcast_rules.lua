-- Pattern rules over a keyed stream: the broadcast state example of
-- Flink's state guide ("The Broadcast State Pattern").
--
-- Items (a color and a shape) are keyed by color. Rules say "a <first>
-- shape followed by a <second> shape of the same color is a match". The
-- rules are a low-volume stream broadcast to every subtask, where
-- process_broadcast stores them in broadcast state: a map of rule name to
-- rule that each subtask holds a copy of. process reads the rules (it may
-- not change them: every subtask sees the same rules only because they
-- change on the broadcast side alone) and keeps, per color and rule, the
-- items that wait for their second shape in keyed map state.
--
-- As in Flink, nothing orders the two inputs against each other; eddy
-- reads what a broadcast input holds before the other input, so the rules
-- that arrive with the data apply to it, every run.
--
--   eddy run examples/broadcast_rules.lua [items.jsonl [rules.jsonl]]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local items_file = arg and arg[1] or here .. "/data/items.jsonl"
local rules_file = arg and arg[2] or here .. "/data/rules.jsonl"

local job = eddy.job { name = "broadcast-rules", parallelism = 2 }

local rules = job:from_file(rules_file):uid("rules"):broadcast()

job:from_file(items_file):uid("items")
  :key_by("color")
  :connect(rules)
  :process("rule-matcher", {
    -- a rule: every subtask gets it and stores it under its name
    process_broadcast = function(ctx, rule)
      ctx:broadcast_state("rules"):put(rule.name, rule)
    end,

    -- an item of one color: does it complete or start a pattern?
    process = function(ctx, item, out)
      local waiting = ctx:map_state("items") -- rule name -> items of this color
      for name, rule in ctx:broadcast_state("rules"):pairs() do
        local stored = waiting:get(name) or {}
        if item.shape == rule.second and #stored > 0 then
          for _, first in ipairs(stored) do
            out(("MATCH %s: %s %s #%d - %s #%d"):format(name, item.color, first.shape, first.id,
              item.shape, item.id))
          end
          stored = {}
        end
        -- as in Flink's example there is no else: with first == second
        -- the closing item also opens the next pair
        if item.shape == rule.first then
          stored[#stored + 1] = item
        end
        if #stored == 0 then
          waiting:remove(name)
        else
          waiting:put(name, stored)
        end
      end
    end,
  })
  :print()

job:run()
