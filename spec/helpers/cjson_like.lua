-- Reads one line of the bundled example data (flat JSON objects of
-- numbers, strings and booleans) without eddy, so that the example specs
-- check eddy against an independent reading of the same files.
return function(line)
  local t = {}
  for key, value in line:gmatch('"([%w_]+)":([^,}]+)') do
    if value:sub(1, 1) == '"' then
      t[key] = value:sub(2, -2)
    elseif value == "true" or value == "false" then
      t[key] = value == "true"
    else
      t[key] = math.tointeger(tonumber(value)) or tonumber(value)
      if value:find("%.") then
        t[key] = tonumber(value) + 0.0
      end
    end
  end
  return t
end
