-- Apply the backlog of fixes stored since the sessions were last brought up to date
-- (`patrol_backlog`, migration 0030): for up to `p_devices` devices with rows, oldest first,
-- the sessions from the device's earliest row's time on (`patrol_apply`), then the rows it
-- read are deleted. Fixes of a device that arrived in several batches since its last pass are
-- applied by one call. A device another transaction is applying is skipped (its rows stay
-- for the next pass), and so is a device whose sessions fail to build: its work is rolled
-- back, a warning names it, its rows stay, and the other devices go on. Returns how many
-- devices and backlog rows were applied.
--
-- In the caller's transaction: the patrol worker calls it in autocommit, a few devices a
-- call, so that each call is a short transaction of its own.
CREATE OR REPLACE FUNCTION patrol_apply_backlog(p_gap_s double precision, p_devices integer,
    OUT applied_devices integer, OUT applied_rows integer)
LANGUAGE plpgsql AS $$
DECLARE
    d    record;
    ids  bigint[];
    t0   timestamptz;
BEGIN
    applied_devices := 0;
    applied_rows := 0;
    FOR d IN
        SELECT b.device FROM patrol_backlog b GROUP BY b.device ORDER BY min(b.id) LIMIT p_devices
    LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtext('patrol_apply'), hashtext(d.device));
        -- read under the lock: rows another pass applied meanwhile are gone
        SELECT array_agg(b.id), min(b.from_time) INTO ids, t0
        FROM patrol_backlog b WHERE b.device = d.device;
        CONTINUE WHEN ids IS NULL;
        BEGIN
            PERFORM patrol_apply(d.device, t0, p_gap_s);
            DELETE FROM patrol_backlog WHERE id = ANY (ids);
            applied_devices := applied_devices + 1;
            applied_rows := applied_rows + cardinality(ids);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'patrol sessions of device % not applied: %', d.device, SQLERRM;
        END;
    END LOOP;
END;
$$;
