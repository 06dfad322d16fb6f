-- wrk: OFREP bulk evaluation of all 100 benchmark flags, a different user on each request.
local counter = 0

request = function()
  counter = counter + 1
  local body = string.format('{"context":{"targetingKey":"user_%d","country":"US","plan":"pro"}}', counter)
  return wrk.format("POST", "/ofrep/v1/evaluate/flags", wrk.headers, body)
end
