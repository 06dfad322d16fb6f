-- wrk: POST /v1/assign cycling over a pool of users that are already assigned (a warm-up
-- run of this script assigns them all), so every call answers a sticky assignment.
local pool = 10000
local counter = 0

request = function()
  counter = counter % pool + 1
  local body = string.format('{"experiment_key":"bench","user_id":"repeat_%d","context":{"plan":"pro"}}', counter)
  return wrk.format("POST", "/v1/assign", wrk.headers, body)
end
