-- wrk script: 256-byte puts through etcd's v3 JSON gateway (POST /v3/kv/put, base64 key and
-- value). Each wrk thread cycles through 10,000 keys of its own (bench/<thread>/<n>).
--   wrk -t2 -c64 -d15s -s benches/peers/etcd_put.lua http://127.0.0.1:23791

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
      .. (b and alphabet:sub(c3 + 1, c3 + 1) or "=") .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

local next_thread = 0
function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end

local bodies = {}
local n = 0
function init(args)
  local value = base64(string.rep("v", 256))
  for i = 1, 10000 do
    local key = base64(string.format("bench/%d/%05d", tid, i))
    bodies[i] = '{"key":"' .. key .. '","value":"' .. value .. '"}'
  end
end

local headers = { ["Content-Type"] = "application/json" }
function request()
  n = n % #bodies + 1
  return wrk.format("POST", "/v3/kv/put", headers, bodies[n])
end
