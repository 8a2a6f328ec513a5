-- Sessions and cells after the answer: a batch of fixes (or one live fix) is acknowledged once
-- the fixes and the latest fixes are committed; the sessions, the tracks and the cells' "last
-- patrolled" (`patrol_apply`) follow, from this backlog, applied by the server's patrol worker
-- (`patrol_apply_backlog`) a device at a time, coalescing whatever arrived for it meanwhile.
--
-- Nothing acknowledged is lost: a backlog row commits with its fixes, and is deleted in the
-- transaction that applied it. A crash leaves the rows for the next run. Readers of tracks and
-- cells see them at most a worker's interval behind the fixes (JOINTGRID_PATROL_APPLY_INTERVAL_S).
--
-- Rows are only inserted by the intake and deleted by the worker, never updated: concurrent
-- batches of one device take no lock on a shared row.

CREATE TABLE patrol_backlog (
    id        bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    device    text NOT NULL,
    side      text NOT NULL,          -- the device's
    from_time timestamptz NOT NULL,   -- the batch's first good fix: sessions from here on
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patrol_backlog_device_idx ON patrol_backlog (device);

-- positions_store no longer takes the session gap: it applies no session itself
DROP FUNCTION IF EXISTS positions_store(text, text, text, text, text, timestamptz[],
    double precision[], double precision[], double precision[], double precision[],
    double precision[], double precision[], double precision[], boolean[], boolean[],
    double precision);
