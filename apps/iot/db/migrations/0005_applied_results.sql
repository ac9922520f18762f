-- Issue 13: result messages whose rows are already in the rollups but may not be acknowledged yet.

-- The evaluator records a results-stream message id here in the same transaction that stores its rows
-- (region views, rollups, state changes), and deletes it after the XACK. A message redelivered after a
-- worker crash is skipped when its id is here, so rollups never count a result twice, even the late
-- (older than the newest) results that are recorded for history without changing any state.
CREATE TABLE applied_result_messages (
    stream_id   text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
