-- Fraud detection: the FraudDetector of Flink's DataStream API walkthrough.
--
-- Per account, a transaction under 1.00 (a thief testing a stolen card)
-- followed, as that account's very next transaction, by one over 500.00
-- within one minute raises an alert. A ValueState flag remembers the small
-- transaction; a processing-time timer one minute later clears it.
--
-- Processing time comes from the job's manual clock, moved by each
-- transaction's recorded arrival time ("time"), so the run is the same
-- every time: eddy replays the minute exactly as it happened.
--
--   eddy run examples/fraud_detection.lua [transactions.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/transactions.jsonl"

local SMALL, LARGE, ONE_MINUTE = 1.00, 500.00, 60 * 1000

local job = eddy.job { name = "fraud-detection", processing_time = "manual" }

job:from_file(input, { arrival_time = "time" })
  :key_by("account")
  :process("fraud-detector", {
    process = function(ctx, t, out)
      -- handles are made once per subtask and cached: asking again is cheap
      local flag, timer = ctx:value_state("flag"), ctx:value_state("timer")
      if flag:value() then
        if t.amount > LARGE then
          out { alert = ctx:key(), transaction = t.id, amount = t.amount }
        end
        -- whatever came next, the small transaction's minute is over
        ctx.timers:delete_processing_time(timer:value())
        flag:clear()
        timer:clear()
      end
      if t.amount < SMALL then
        flag:update(true)
        local at = ctx.timers:current_processing_time() + ONE_MINUTE
        ctx.timers:register_processing_time(at)
        timer:update(at)
      end
    end,
    on_timer = function(ctx)
      ctx:value_state("flag"):clear()
      ctx:value_state("timer"):clear()
    end,
  })
  :print()

job:run()
