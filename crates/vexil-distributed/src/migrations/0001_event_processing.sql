-- The distributed event pipeline's state, beside the store's tables (versioned apart, in
-- events_schema_version). `log_partition` is the partition of the Kafka topic.

-- The topic these tables are the processing state of: offsets mean nothing for another one.
CREATE TABLE event_topic (
    id         INTEGER PRIMARY KEY CHECK (id = 0),
    topic      TEXT NOT NULL,
    partitions INTEGER NOT NULL
);

-- The consumer group: live nodes, and which node processes each partition.
CREATE TABLE event_members (
    node    TEXT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE event_partitions (
    log_partition INTEGER PRIMARY KEY,
    owner         TEXT,
    -- Raised by every takeover; a commit must name the current one (the fence).
    epoch         BIGINT NOT NULL DEFAULT 0,
    lease_until   TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    -- The checkpoint: every record of the partition below it is processed.
    next_offset   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE event_users (
    log_partition INTEGER NOT NULL,
    user_id       TEXT NOT NULL,
    state         TEXT NOT NULL,
    PRIMARY KEY (log_partition, user_id)
);

CREATE TABLE event_aggregates (
    experiment    TEXT NOT NULL,
    variant       TEXT NOT NULL,
    metric        TEXT NOT NULL,
    log_partition INTEGER NOT NULL,
    n             BIGINT NOT NULL,
    sum_x         DOUBLE PRECISION NOT NULL,
    sum_x2        DOUBLE PRECISION NOT NULL,
    sum_y         DOUBLE PRECISION NOT NULL,
    sum_y2        DOUBLE PRECISION NOT NULL,
    sum_xy        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (experiment, variant, metric, log_partition)
);

-- `period` is `hour` or `day`; `start` is Unix seconds.
CREATE TABLE event_counters (
    period        TEXT NOT NULL,
    event         TEXT NOT NULL,
    experiment    TEXT NOT NULL,
    start         BIGINT NOT NULL,
    variant       TEXT NOT NULL,
    log_partition INTEGER NOT NULL,
    count         BIGINT NOT NULL,
    sum           DOUBLE PRECISION NOT NULL,
    users         BIGINT NOT NULL,
    PRIMARY KEY (period, event, experiment, start, variant, log_partition)
);

CREATE TABLE event_counter_users (
    log_partition INTEGER NOT NULL,
    period        TEXT NOT NULL,
    start         BIGINT NOT NULL,
    event         TEXT NOT NULL,
    experiment    TEXT NOT NULL,
    variant       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    PRIMARY KEY (log_partition, period, start, event, experiment, variant, user_id)
);

-- Sender-given event ids, per partition (a redelivery has the same user, so the same partition).
CREATE TABLE event_dedupe (
    log_partition INTEGER NOT NULL,
    event_id      TEXT NOT NULL,
    log_offset    BIGINT NOT NULL,
    seen_at       BIGINT NOT NULL,
    PRIMARY KEY (log_partition, event_id)
);
CREATE INDEX event_dedupe_seen_at ON event_dedupe (log_partition, seen_at);

-- Archive buffers not yet written as files, by the archive's time partition.
CREATE TABLE event_archive_open (
    log_partition     INTEGER NOT NULL,
    archive_partition TEXT NOT NULL,
    first_offset      BIGINT NOT NULL,
    first_received    BIGINT NOT NULL,
    PRIMARY KEY (log_partition, archive_partition)
);
