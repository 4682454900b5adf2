-- The server view's read: one call answers one request (one round trip), whatever the page,
-- the filters and the number of jobs on the server.
--
-- One row per job of the requested page, in job ID order, each with the server and the summary
-- over every job the filters select; a page past the end (or a server whose jobs the filters
-- all leave out) gives one row with the job's columns NULL; no row: no such server. The job's
-- columns are those of zdm_monitor_job_snapshot, so the job endpoint's serializer builds each
-- element. Called with named arguments and read by column name (repository.py).

CREATE OR REPLACE FUNCTION zdm_monitor_server_snapshot(
    p_system_id bigint,    -- the server asked for, by ID
    p_system_name text,    -- or by name
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
    p_log_limit integer,  -- each job's newest lines
    p_detail boolean      -- also return each line's time
)
RETURNS TABLE (
    system_id bigint,
    system_name text,
    system_os text,
    -- Every job of the server the filters select, both halves present.
    total integer,
    completed integer,
    in_progress integer,
    failed integer,
    pending integer,
    percent_sum bigint,
    -- Jobs with the definition half only that the filters select (the runtime half's status
    -- cannot match a status filter).
    incomplete integer,
    -- With a partition or drive filter: the server's jobs on it, and those of them that the
    -- other filters select but lack a half.
    on_place integer,
    incomplete_on_place integer,
    -- How new the rows of the server and of its jobs the summary may count are
    -- (zdm_monitor_written: sql/job_snapshot.sql).
    written bigint,
    -- One job of the page.
    has_definition boolean,
    has_runtime boolean,
    mismatched text[],
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
    version bigint
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_server server%ROWTYPE;
    v_server_written bigint;
    v_place boolean := p_partition IS NOT NULL OR p_drive IS NOT NULL;
    v_now bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
BEGIN
    IF p_system_id IS NOT NULL THEN
        SELECT * INTO v_server FROM server s WHERE s.id = p_system_id;
    ELSE
        SELECT * INTO v_server FROM server s WHERE s.name = p_system_name;
    END IF;
    IF v_server.id IS NULL THEN
        RETURN;
    END IF;
    SELECT zdm_monitor_written(s.xmin, v_now) INTO v_server_written
    FROM server s WHERE s.id = v_server.id;

    RETURN QUERY
    -- Every job of the server, as narrow as the summary and the filters need: the page's
    -- rows are read in full below, for its jobs only.
    WITH jobs AS MATERIALIZED (
        SELECT b.id, i.backup_id IS NOT NULL AS has_runtime, i.status, i.percent,
               (p_partition IS NULL OR b.partition = p_partition)
                   AND (p_drive IS NULL OR b.drive = p_drive) AS on_place,
               (    (p_mode IS NULL OR b.mode = p_mode)
                AND (p_server_id IS NULL OR v_server.id = p_server_id)
                AND (p_server_name IS NULL OR v_server.name = p_server_name)
                AND (p_repository_type IS NULL OR r.type = p_repository_type)
                AND (p_repository_path IS NULL OR r.path = p_repository_path)
                AND (p_job_name IS NULL OR b.name = p_job_name)
               ) IS TRUE AS others_match,
               greatest(zdm_monitor_written(b.xmin, v_now), zdm_monitor_written(r.xmin, v_now))
                   AS defined,
               zdm_monitor_written(i.xmin, v_now) AS progressed
        FROM backup b
        LEFT JOIN repository r ON r.id = b.repository_id
        -- One key lookup per job of the server, never a scan of every job's runtime half
        -- (LIMIT 1 keeps the planner from turning it into a hash join).
        LEFT JOIN LATERAL (
            SELECT i.backup_id, i.status, i.percent, i.xmin
            FROM backup_info i WHERE i.backup_id = b.id LIMIT 1
        ) i ON true
        WHERE b.server_id = v_server.id
    ),
    selected AS (
        SELECT * FROM jobs j
        WHERE j.on_place AND j.others_match AND j.has_runtime
          AND (p_status IS NULL OR j.status = p_status)
    ),
    summary AS (
        SELECT count(*)::integer AS total,
               count(*) FILTER (WHERE j.status = 'complete')::integer AS completed,
               count(*) FILTER (WHERE j.status IN ('preparing', 'processing', 'canceling'))::integer
                   AS in_progress,
               count(*) FILTER (WHERE j.status IN ('error', 'canceled'))::integer AS failed,
               count(*) FILTER (WHERE j.status IN ('scheduled', 'registered'))::integer AS pending,
               COALESCE(sum(j.percent), 0)::bigint AS percent_sum
        FROM selected j
    ),
    places AS (
        SELECT count(*) FILTER (WHERE v_place AND j.on_place)::integer AS on_place,
               count(*) FILTER (WHERE v_place AND j.on_place AND j.others_match
                                AND NOT j.has_runtime)::integer AS incomplete_on_place,
               count(*) FILTER (WHERE j.on_place AND j.others_match AND NOT j.has_runtime
                                AND p_status IS NULL)::integer AS incomplete,
               -- How new the rows the answer depends on are: the server's, every job's
               -- definition (a job may move into or out of the filters), and the progress of
               -- the jobs a status may select (one leaving the selection still counts).
               greatest(v_server_written, max(j.defined),
                        max(j.progressed) FILTER (WHERE j.on_place AND j.others_match))
                   AS written
        FROM jobs j
    ),
    page_ids AS (
        SELECT j.id FROM selected j ORDER BY j.id OFFSET p_skip LIMIT p_limit
    ),
    page AS (
        SELECT b.id, b.name, b.mode, b.partition, b.drive, r.type AS repository_type,
               r.path AS repository_path, i.status, i.percent, i.message, i.started_at,
               i.ended_at, i.last_report_at,
               greatest(zdm_monitor_written(b.xmin, v_now), zdm_monitor_written(r.xmin, v_now),
                        zdm_monitor_written(i.xmin, v_now)) AS written
        FROM page_ids p
        JOIN backup b ON b.id = p.id
        LEFT JOIN repository r ON r.id = b.repository_id
        JOIN backup_info i ON i.backup_id = b.id
    )
    SELECT v_server.id, v_server.name, v_server.os,
           su.total, su.completed, su.in_progress, su.failed, su.pending, su.percent_sum,
           pl.incomplete, pl.on_place, pl.incomplete_on_place, pl.written,
           pg.id IS NOT NULL, pg.id IS NOT NULL, '{}'::text[],  -- the page's jobs match
           pg.name, v_server.name, v_server.os, pg.partition, pg.drive,
           pg.status, pg.percent, pg.message, pg.started_at, pg.ended_at, pg.last_report_at,
           COALESCE(ends.log_last - ends.log_first + 1, 0),
           COALESCE(lines.messages, '{}'),
           v_server.id, pg.mode, pg.repository_type, pg.repository_path,
           ends.log_first, ends.log_last, lines.first_line, lines.times, pg.id,
           greatest(v_server_written, pg.written, zdm_monitor_written(ends.log_last_xmin, v_now))
    FROM summary su
    CROSS JOIN places pl
    LEFT JOIN page pg ON true
    -- Each job's lines are one consecutive run: both ends on the index, then a key range.
    LEFT JOIN LATERAL (
        SELECT (SELECT l.line FROM backup_log l WHERE l.backup_id = pg.id
                ORDER BY l.line LIMIT 1) AS log_first,
               newest.line AS log_last, newest.xmin AS log_last_xmin
        FROM (SELECT l.line, l.xmin FROM backup_log l WHERE l.backup_id = pg.id
              ORDER BY l.line DESC LIMIT 1) newest
    ) ends ON pg.id IS NOT NULL
    LEFT JOIN LATERAL (
        SELECT array_agg(l.message ORDER BY l.line) AS messages, min(l.line) AS first_line,
               CASE WHEN p_detail THEN array_agg(l.logged_at ORDER BY l.line) END AS times
        FROM backup_log l
        WHERE l.backup_id = pg.id
          AND l.line > ends.log_last - p_log_limit AND l.line <= ends.log_last
    ) lines ON pg.id IS NOT NULL AND p_log_limit > 0
    ORDER BY pg.id;
END
$$;
