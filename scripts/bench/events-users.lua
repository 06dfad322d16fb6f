-- POST /v1/events with 500-event batches of users never seen before: 250 users a batch, each
-- exposed to the experiment `checkout` (variant by parity) and then purchasing once, so that
-- every user gets state in the pipeline (an assignment and a metric value) and joins the unique
-- users of the purchase counters. User ids are u<FIRST_USER + n>, USERS_PER_THREAD per wrk
-- thread; a thread stops once its users are sent. PACE_MS (default 0) pauses each connection
-- after every answer. KNOWN_USERS=N sends returning users instead: each batch's 250 users drawn
-- at random from u<FIRST_USER> to u<FIRST_USER + N - 1>, with no end.
dofile(os.getenv("VEXIL_BENCH_DIR") .. "/acknowledged.lua")
wrk.method = "POST"
wrk.path = "/v1/events"
local per_batch = 250
local per_thread = tonumber(os.getenv("USERS_PER_THREAD") or "1000000")
local first_user = tonumber(os.getenv("FIRST_USER") or "0")
local pace = tonumber(os.getenv("PACE_MS") or "0")
local known = tonumber(os.getenv("KNOWN_USERS") or "0")
local sent = 0

function init()
    math.randomseed(os.time() * 100 + thread_number)
end

function delay()
    return pace
end

function request()
    local base = first_user + (thread_number - 1) * per_thread + sent
    local parts = {}
    for i = 0, per_batch - 1 do
        local user = base + i
        if known > 0 then
            user = first_user + math.random(0, known - 1)
        end
        local variant = (user % 2 == 0) and "control" or "treatment"
        parts[2 * i + 1] = string.format(
            '{"event":"exposure","type":"exposure","user_id":"u%d","experiment_key":"checkout","variant":"%s"}',
            user, variant)
        parts[2 * i + 2] = string.format('{"event":"purchase","user_id":"u%d","value":%d}', user, user % 100)
    end
    sent = sent + per_batch
    return wrk.format(nil, nil, nil, "[" .. table.concat(parts, ",") .. "]")
end

local count_acknowledged = response
function response(status, headers, body)
    count_acknowledged(status, headers, body)
    if known == 0 and sent >= per_thread then
        wrk.thread:stop()
    end
end
