-- POST /v1/events with the 500-event batch of events.lua, each connection waiting PACE_MS
-- (default 20) after each answer: a steady offered rate instead of wrk's flat-out load, for
-- watching whether processing keeps up. 5 connections at 20 ms give about 100,000 events/s.
-- EVENT_IDS=1 gives every event a unique event_id, so processing also deduplicates each one.
dofile(os.getenv("VEXIL_BENCH_DIR") .. "/events.lua")
local pace = tonumber(os.getenv("PACE_MS") or "20")
function delay()
    return pace
end

if os.getenv("EVENT_IDS") == "1" then
    local batch = 0
    local prefix = tostring(math.random(1, 1e9))
    request = function()
        batch = batch + 1
        local parts = {}
        for i = 1, 500 do
            local name = (i % 3 == 0) and "purchase" or "page_view"
            parts[i] = string.format(
                '{"event_id":"%s-%d-%d","event":"%s","user_id":"user_%d","value":%d.5,"properties":{"plan":"pro"}}',
                prefix, batch, i, name, (i * 7) % 1000, i % 50)
        end
        return wrk.format(nil, nil, nil, "[" .. table.concat(parts, ",") .. "]")
    end
end
