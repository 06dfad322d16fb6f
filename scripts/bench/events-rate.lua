-- POST /v1/events with the 500-event batch of events.lua at a fixed offered rate: RATE events/s
-- for each wrk thread (events-load.sh divides its RATE among the threads). The thread keeps one
-- schedule of send times, one batch every 500 / RATE seconds, and delay() holds a connection
-- that got its answer until the next free slot of that schedule, as wrk2's -R does. So the
-- offered rate does not sink when answers slow down (as a fixed pause after each answer would),
-- until every connection is busy: a slot that finds no free connection is sent late, and the
-- lateness is counted (wrk measures a batch's latency from the moment it is sent).
dofile(os.getenv("VEXIL_BENCH_DIR") .. "/events.lua")

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } vexil_bench_timespec;
int clock_gettime(int clock, vexil_bench_timespec *now);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("vexil_bench_timespec")
local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
    return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("RATE") or "")
if not rate or rate <= 0 then
    error("events-rate.lua needs RATE (events/s for each wrk thread)")
end
local interval_ms = 500 * 1000 / rate
-- A send more than this after its slot counts as late.
local LATE_MS = 1

local next_slot = nil
sends, late = 0, 0
function delay()
    local now = now_ms()
    next_slot = (next_slot or now) + interval_ms
    sends = sends + 1
    if next_slot >= now then
        return math.floor(next_slot - now + 0.5)
    end
    if now - next_slot > LATE_MS then
        late = late + 1
    end
    return 0
end

local count_acknowledged = done
function done(summary, latency, requests)
    count_acknowledged(summary, latency, requests)
    local total_sends, total_late = 0, 0
    for _, thread in ipairs(bench_threads) do
        total_sends = total_sends + thread:get("sends")
        total_late = total_late + thread:get("late")
    end
    io.write(string.format("paced sends: %d, of them %d later than their slot by over %d ms (no connection free)\n",
        total_sends, total_late, LATE_MS))
end
