-- wrk script: 256-byte messages to Parley (POST /v1/conversations/{cid}/messages) as users
-- whose tokens were made beforehand by `parley bench tokens` (lines of token<TAB>conversation).
-- Every request rotates to the next user; client_msg_ids are unique per run (the nonce).
--   wrk -t2 -c64 -d15s -s benches/peers/parley_send.lua http://127.0.0.1:23901 -- TOKENS NONCE

local next_thread = 0
function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end

local users = {}
local n = 0
local nonce = "0"
local body = string.rep("x", 256)
function init(args)
  for line in io.lines(args[1]) do
    local token, cid = line:match("^(%S+)\t(%S+)$")
    if token then
      users[#users + 1] = {
        path = "/v1/conversations/" .. cid .. "/messages",
        headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
      }
    end
  end
  nonce = args[2] or "0"
end

function request()
  n = n + 1
  local u = users[(n + tid * 31) % #users + 1]
  local payload = '{"client_msg_id":"w' .. nonce .. "-" .. tid .. "-" .. n .. '","body":"' .. body .. '"}'
  return wrk.format("POST", u.path, u.headers, payload)
end
