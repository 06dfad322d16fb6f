-- POST /v1/events with one 500-event JSON array. The events carry no event_id, so every request
-- adds 500 new events (generated ids skip the dedupe table).
wrk.method = "POST"
wrk.path = "/v1/events"
local parts = {}
for i = 1, 500 do
    local name = (i % 3 == 0) and "purchase" or "page_view"
    parts[i] = string.format('{"event":"%s","user_id":"user_%d","value":%d.5,"properties":{"plan":"pro"}}',
        name, (i * 7) % 1000, i % 50)
end
wrk.body = "[" .. table.concat(parts, ",") .. "]"

dofile(os.getenv("VEXIL_BENCH_DIR") .. "/acknowledged.lua")
