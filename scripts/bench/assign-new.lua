-- wrk: POST /v1/assign for a user never seen before on every request, so each call is a
-- first assignment that is stored (insert-if-absent, group-committed). Each wrk thread has
-- its own prefix, so ids stay unique across threads. With PACE_MS set, each connection waits
-- that long after each answer: a steady offered rate instead of wrk's flat-out load.
local counter = 0
local pace = tonumber(os.getenv("PACE_MS") or "")
if pace then
  function delay()
    return pace
  end
end
prefix = "t0_"

local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("prefix", "t" .. next_thread .. "_")
end

request = function()
  counter = counter + 1
  local body = string.format('{"experiment_key":"bench","user_id":"new_%s%d","context":{"plan":"pro"}}',
    prefix, counter)
  return wrk.format("POST", "/v1/assign", wrk.headers, body)
end
