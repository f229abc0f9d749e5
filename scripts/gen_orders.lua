-- Writes examples/data/orders.jsonl: the bundled orders data set, the same
-- on every run (a fixed seed). Regenerate with
--   lua5.4 scripts/gen_orders.lua > examples/data/orders.jsonl
-- Customers buy at different rates; order times mostly increase, with a few
-- orders arriving late (for the event-time examples).

math.randomseed(20261122)

local customers = {
  "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
  "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yves",
}
local products = { "book", "coffee", "headphones", "lamp", "notebook", "pen", "plant", "tea" }
local base_price = {
  book = 18, coffee = 9, headphones = 120, lamp = 45, notebook = 6, pen = 3, plant = 25, tea = 7,
}

-- Customer i is picked with weight 1/i (a few regulars, a long tail).
local weights, total = {}, 0
for i = 1, #customers do
  total = total + 1 / i
  weights[i] = total
end
local function pick_customer()
  local r = math.random() * total
  for i, w in ipairs(weights) do
    if r <= w then
      return customers[i]
    end
  end
  return customers[#customers]
end

local time = 1767600000000 -- 2026-01-05T08:00:00Z
for id = 1, 3000 do
  time = time + math.random(5, 180) * 1000
  local product = products[math.random(#products)]
  local quantity = math.random(1, 4)
  local cents = math.floor(base_price[product] * quantity * (0.8 + 0.4 * math.random()) * 100 + 0.5)
  if math.random() < 0.02 then
    cents = math.random(10, 95) -- a few small test charges
  end
  local t = time
  if math.random() < 0.03 then
    t = t - math.random(60, 900) * 1000 -- arrives late
  end
  io.write(('{"order_id":%d,"customer":"%s","product":"%s","quantity":%d,"amount":%d.%02d,"time":%d}\n')
    :format(id, pick_customer(), product, quantity, cents // 100, cents % 100, t))
end
