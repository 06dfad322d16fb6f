-- Shared by the event load scripts: numbers the wrk threads (the global `thread_number`, from 1)
-- and counts the answers that acknowledged their batch (2xx) in every thread, printing the
-- total: wrk's own summary counts every answer, 429s and 5xx included, in Requests/sec.
-- `bench_threads` lists the threads for the scripts that total counters of their own in done().
bench_threads = {}
function setup(thread)
    table.insert(bench_threads, thread)
    thread:set("thread_number", #bench_threads)
end

acknowledged = 0
function response(status, headers, body)
    if status >= 200 and status < 300 then
        acknowledged = acknowledged + 1
    end
end

function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(bench_threads) do
        total = total + thread:get("acknowledged")
    end
    io.write(string.format("2xx responses: %d of %d in %.3fs\n", total, summary.requests, summary.duration / 1e6))
end
