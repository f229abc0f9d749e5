-- Running the eddy executable from specs: the command, its standard output,
-- standard error and exit status.

local M = {}

M.root = os.getenv("EDDY_ROOT") or "."
M.exe = os.getenv("EDDY_EXE") or (M.root .. "/bin/eddy")

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local s = f:read("a")
  f:close()
  return s
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end
M.quote = quote

-- M.sh(command [, stdin_text]) -> stdout, stderr, exit status
function M.sh(command, input)
  local err_path = os.tmpname()
  local in_path
  local cmd = command
  if input ~= nil then
    in_path = os.tmpname()
    local f = assert(io.open(in_path, "wb"))
    f:write(input)
    f:close()
    cmd = cmd .. " < " .. quote(in_path)
  end
  local p = assert(io.popen(cmd .. " 2> " .. quote(err_path), "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = read_all(err_path)
  os.remove(err_path)
  if in_path then
    os.remove(in_path)
  end
  return out, err, code
end

-- M.eddy(args..., {stdin = text}) -> stdout, stderr, exit status
function M.eddy(...)
  local args = { ... }
  local input
  if type(args[#args]) == "table" then
    input = table.remove(args).stdin
  end
  local parts = { quote(M.exe) }
  for _, a in ipairs(args) do
    parts[#parts + 1] = quote(a)
  end
  return M.sh(table.concat(parts, " "), input)
end

-- A fresh temporary directory, removed by M.cleanup().
local dirs = {}
function M.tmpdir()
  local p = assert(io.popen("mktemp -d"))
  local d = p:read("l")
  p:close()
  dirs[#dirs + 1] = d
  return d
end

function M.cleanup()
  for _, d in ipairs(dirs) do
    os.execute("rm -rf " .. quote(d))
  end
  dirs = {}
end

function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

M.read = read_all

-- Lines of a text, without the trailing empty line.
function M.lines(text)
  local t = {}
  for line in text:gmatch("([^\n]*)\n") do
    t[#t + 1] = line
  end
  return t
end

return M
