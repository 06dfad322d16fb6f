-- POST /v1/events with 500-event batches of users never seen before: 250 users a batch, each
-- exposed to the experiment `checkout` (variant by parity) and then purchasing once, so that
-- every user gets state in the pipeline (an assignment and a metric value) and joins the unique
-- users of the purchase counters. User ids are u<FIRST_USER + n>, USERS_PER_THREAD per wrk
-- thread; a thread stops once its users are sent. PACE_MS (default 0) pauses each connection
-- after every answer. KNOWN_USERS=N sends returning users instead: each batch's 250 users drawn
-- at random from u<FIRST_USER> to u<FIRST_USER + N - 1>, with no end: uniformly, or with
-- KNOWN_DRAW=zipf by Zipf's law as YCSB's core workloads draw their records (the user of rank r
-- drawn in proportion to 1 / r^ZIPF_EXPONENT, default 0.99, by inverting the continuous
-- distribution; ranks scattered over the ids by a fixed permutation, so that the frequent users
-- are not neighbours in the store's key order).
dofile(os.getenv("VEXIL_BENCH_DIR") .. "/acknowledged.lua")
wrk.method = "POST"
wrk.path = "/v1/events"
local per_batch = 250
local per_thread = tonumber(os.getenv("USERS_PER_THREAD") or "1000000")
local first_user = tonumber(os.getenv("FIRST_USER") or "0")
local pace = tonumber(os.getenv("PACE_MS") or "0")
local known = tonumber(os.getenv("KNOWN_USERS") or "0")
local zipf = os.getenv("KNOWN_DRAW") == "zipf"
local exponent = tonumber(os.getenv("ZIPF_EXPONENT") or "0.99")
-- A prime: rank -> id is a permutation of the known ids for any count it does not divide.
local scatter = 1000003
local sent = 0

function init()
    math.randomseed(os.time() * 100 + thread_number)
end

function delay()
    return pace
end

-- A known user: uniformly drawn, or Zipf-drawn rank (1 .. known) scattered over the ids.
local function known_user()
    if not zipf then
        return math.random(0, known - 1)
    end
    local rank
    if exponent == 1 then
        rank = math.floor(known ^ math.random())
    else
        local a = 1 - exponent
        rank = math.floor(((known ^ a - 1) * math.random() + 1) ^ (1 / a))
    end
    rank = math.min(math.max(rank, 1), known)
    return math.fmod((rank - 1) * scatter, known)
end

function request()
    local base = first_user + (thread_number - 1) * per_thread + sent
    local parts = {}
    for i = 0, per_batch - 1 do
        local user = base + i
        if known > 0 then
            user = first_user + known_user()
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
