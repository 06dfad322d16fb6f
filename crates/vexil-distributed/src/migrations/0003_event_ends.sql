-- Each partition's end offset on the bus, the furthest any node has seen acknowledged or
-- fetched. Every node shares what it knows once a second; less each partition's checkpoint,
-- it is the topic's backlog, which holds ingest back on every node.
CREATE TABLE event_ends (
    log_partition INTEGER PRIMARY KEY,
    end_offset    BIGINT NOT NULL
);
