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

-- Counts the answers that acknowledged their batch (2xx) in every thread, and prints the total:
-- wrk's own summary counts every answer, 429s and 5xx included, in Requests/sec.
local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

acknowledged = 0
function response(status, headers, body)
    if status >= 200 and status < 300 then
        acknowledged = acknowledged + 1
    end
end

function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do
        total = total + thread:get("acknowledged")
    end
    io.write(string.format("2xx responses: %d of %d in %.3fs\n", total, summary.requests, summary.duration / 1e6))
end
