-- The read path of zdm-monitor: one call answers one request (one round trip).
--
-- PL/pgSQL keeps the plans of the statements below for the life of a connection, so after
-- the first calls a request skips parsing and planning, which cost more than running the
-- statements themselves. Unlike prepared statements this holds no session state in the
-- client, so it works unchanged through PgBouncer in transaction pooling mode.

-- Called with named arguments (p_job_id => ...) and read by column name (repository.py).
-- Changing the arguments or the columns needs a step in upgrade.sql for the old signature.

-- How new a row version is: the 64-bit ID of the transaction that wrote it, its xmin widened
-- with the epoch of p_now (the reading snapshot's xmax). The same stored rows give the same
-- number wherever they are read (a streaming replica holds the primary's rows, xmin included),
-- and a later write of a row a larger one: the validators' "how new" (polling.py). A row
-- untouched for more than 2^32 transactions may count as newer than it is (its xmin has
-- wrapped), which only makes the service read again where it could have answered from memory.
CREATE OR REPLACE FUNCTION zdm_monitor_written(p_xmin xid, p_now bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT p_now - ((p_now - p_xmin::text::bigint) & 4294967295) $$;

CREATE OR REPLACE FUNCTION zdm_monitor_job_snapshot(
    p_job_id bigint,
    p_name text,
    p_mode text,
    p_partition text,
    p_drive text,
    p_server_id numeric,
    p_server_name text,
    p_repository_type text,
    p_repository_path text,
    p_status text,
    p_job_name text,
    p_skip integer,
    p_limit integer,
    p_after integer,  -- NULL: pages count back from the newest line; else forward from this one
    p_detail boolean  -- also return each line's time
)
RETURNS TABLE (
    has_definition boolean,
    has_runtime boolean,
    mismatched text[],  -- the query parameters of the filters the job does not match
    name text,
    server_name text,
    os text,
    partition text,
    drive text,
    status text,
    percent smallint,
    message text,
    started_at timestamptz,
    ended_at timestamptz,
    last_report_at timestamptz,
    log_total integer,
    log_lines text[],
    server_id bigint,
    mode text,
    repository_type text,
    repository_path text,
    log_first integer,
    log_last integer,
    first_line integer,
    log_times timestamptz[],
    job_id bigint,
    version bigint  -- how new the rows the answer is made of are (zdm_monitor_written)
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint := p_job_id;
    v_now bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
    v_first integer;
    v_last integer;
    v_last_xmin xid;
    v_low bigint;  -- the lines returned are v_low < line <= v_low + p_limit
    v_lines text[] := '{}';
    v_start integer;
    v_times timestamptz[];
BEGIN
    IF v_id IS NULL THEN
        SELECT b.id INTO v_id FROM backup b WHERE b.name = p_name;
        IF v_id IS NULL THEN
            RETURN;
        END IF;
    END IF;

    -- A job's lines are one consecutive run: its size is last - first + 1, and page N is a
    -- primary-key range counted back from the newest line. ORDER BY ... LIMIT 1 keeps both
    -- ends on the index whatever the statistics say about the job's size.
    SELECT l.line INTO v_first FROM backup_log l WHERE l.backup_id = v_id ORDER BY l.line LIMIT 1;
    SELECT l.line, l.xmin INTO v_last, v_last_xmin
    FROM backup_log l WHERE l.backup_id = v_id ORDER BY l.line DESC LIMIT 1;

    IF v_last IS NOT NULL THEN
        -- Page N of p_limit lines (p_skip = (N - 1) * p_limit): counted back from the newest
        -- line, or with a cursor forward from it. A cursor before the oldest kept line (pruned
        -- since) counts from the oldest line. bigint: a cursor near the integer maximum plus a
        -- skip would overflow.
        v_low := CASE WHEN p_after IS NULL THEN v_last::bigint - p_skip - p_limit
                      ELSE greatest(p_after, v_first - 1)::bigint + p_skip END;
        SELECT array_agg(l.message ORDER BY l.line), min(l.line),
               CASE WHEN p_detail THEN array_agg(l.logged_at ORDER BY l.line) END
        INTO v_lines, v_start, v_times
        FROM backup_log l
        WHERE l.backup_id = v_id AND l.line > v_low AND l.line <= v_low + p_limit;
    END IF;

    RETURN QUERY
    SELECT
        b.id IS NOT NULL,
        i.backup_id IS NOT NULL,
        array_remove(ARRAY[
            CASE WHEN b.mode IS DISTINCT FROM coalesce(p_mode, b.mode) THEN 'mode' END,
            CASE WHEN b.partition IS DISTINCT FROM coalesce(p_partition, b.partition)
                 THEN 'partition' END,
            CASE WHEN b.drive IS DISTINCT FROM coalesce(p_drive, b.drive) THEN 'drive' END,
            CASE WHEN s.id IS DISTINCT FROM coalesce(p_server_id, s.id)
                   OR s.name IS DISTINCT FROM coalesce(p_server_name, s.name) THEN 'server' END,
            CASE WHEN r.type IS DISTINCT FROM coalesce(p_repository_type, r.type)
                 THEN 'repositoryType' END,
            CASE WHEN r.path IS DISTINCT FROM coalesce(p_repository_path, r.path)
                 THEN 'repositoryPath' END,
            CASE WHEN i.status IS DISTINCT FROM coalesce(p_status, i.status) THEN 'status' END,
            CASE WHEN b.name IS DISTINCT FROM coalesce(p_job_name, b.name) THEN 'jobName' END
        ], NULL),
        b.name, s.name, s.os, b.partition, b.drive,
        i.status, i.percent, i.message, i.started_at, i.ended_at, i.last_report_at,
        COALESCE(v_last - v_first + 1, 0),
        COALESCE(v_lines, '{}'),
        s.id, b.mode, r.type, r.path,
        v_first, v_last, v_start, v_times, v_id,
        greatest(zdm_monitor_written(b.xmin, v_now), zdm_monitor_written(s.xmin, v_now),
                 zdm_monitor_written(r.xmin, v_now), zdm_monitor_written(i.xmin, v_now),
                 zdm_monitor_written(v_last_xmin, v_now))
    FROM (SELECT v_id AS id) job
    LEFT JOIN backup b ON b.id = job.id
    LEFT JOIN server s ON s.id = b.server_id
    LEFT JOIN repository r ON r.id = b.repository_id
    LEFT JOIN backup_info i ON i.backup_id = job.id
    WHERE b.id IS NOT NULL OR i.backup_id IS NOT NULL;
END
$$;
