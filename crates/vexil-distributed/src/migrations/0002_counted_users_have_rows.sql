-- Every user in a counter's unique users gets a row in event_users. Processing asks about a
-- user's memberships only when the user has a row; before this version only exposed users had
-- one. The rows added hold the state of a user never exposed.
INSERT INTO event_users (log_partition, user_id, state)
SELECT DISTINCT log_partition, user_id, '{"assignments":[]}' FROM event_counter_users
ON CONFLICT (log_partition, user_id) DO NOTHING;
