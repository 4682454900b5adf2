-- The read path of zdm-monitor: one call answers one request (one round trip).
--
-- PL/pgSQL keeps the plans of the statements below for the life of a connection, so after
-- the first calls a request skips parsing and planning, which cost more than running the
-- statements themselves. Unlike prepared statements this holds no session state in the
-- client, so it works unchanged through PgBouncer in transaction pooling mode.
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
    p_limit integer
)
RETURNS TABLE (
    has_definition boolean,
    has_runtime boolean,
    matches boolean,
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
    log_lines text[]
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint := p_job_id;
    v_first integer;
    v_last integer;
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
    SELECT l.line INTO v_last FROM backup_log l WHERE l.backup_id = v_id ORDER BY l.line DESC LIMIT 1;

    RETURN QUERY
    SELECT
        b.id IS NOT NULL,
        i.backup_id IS NOT NULL,
        (    (p_mode IS NULL OR b.mode = p_mode)
         AND (p_partition IS NULL OR b.partition = p_partition)
         AND (p_drive IS NULL OR b.drive = p_drive)
         AND (p_server_id IS NULL OR s.id = p_server_id)
         AND (p_server_name IS NULL OR s.name = p_server_name)
         AND (p_repository_type IS NULL OR r.type = p_repository_type)
         AND (p_repository_path IS NULL OR r.path = p_repository_path)
         AND (p_status IS NULL OR i.status = p_status)
         AND (p_job_name IS NULL OR b.name = p_job_name)
        ) IS TRUE,
        b.name, s.name, s.os, b.partition, b.drive,
        i.status, i.percent, i.message, i.started_at, i.ended_at, i.last_report_at,
        COALESCE(v_last - v_first + 1, 0),
        COALESCE(
            (SELECT array_agg(l.message ORDER BY l.line)
             FROM backup_log l
             WHERE l.backup_id = v_id
               AND l.line > v_last - p_skip - p_limit
               AND l.line <= v_last - p_skip),
            '{}'
        )
    FROM (SELECT v_id AS id) job
    LEFT JOIN backup b ON b.id = job.id
    LEFT JOIN server s ON s.id = b.server_id
    LEFT JOIN repository r ON r.id = b.repository_id
    LEFT JOIN backup_info i ON i.backup_id = job.id
    WHERE b.id IS NOT NULL OR i.backup_id IS NOT NULL;
END
$$;
