-- wrk: POST /v1/flags/{key}/evaluate over the 100 benchmark flags, a different user and
-- flag on each request, with a context that some rules match.
local counter = 0
local countries = {"US", "CA", "FR", "DE"}
local plans = {"pro", "free"}

request = function()
  counter = counter + 1
  local path = string.format("/v1/flags/flag_%d/evaluate", counter % 100)
  local body = string.format('{"user_id":"user_%d","context":{"country":"%s","plan":"%s","age":%d}}',
    counter, countries[counter % 4 + 1], plans[counter % 2 + 1], counter % 90)
  return wrk.format("POST", path, wrk.headers, body)
end
