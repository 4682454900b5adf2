-- What zdm-monitor 0.1.0 installed in ZDM's tables for its snapshot cache, as it shipped: the
-- upgrade step of zdm_monitor/sql/upgrade.sql removes it (tests/test_db.py).

-- Change notifications for the snapshot cache of zdm-monitor's workers (zdm_monitor/cache.py).
--
-- Statement-level triggers with transition tables send one NOTIFY per statement on the channel
-- zdm_monitor_changes, its payload the IDs of the jobs the statement touched, comma-separated:
-- a writer inserting a log line or updating progress pays one small trigger per statement, not
-- one per row. The payload is '*' (forget everything) when a server or repository changed or
-- was deleted, a table was truncated, or the IDs would not fit in a notification (8000 bytes).
-- Notifications are delivered at commit, and only for committed transactions.

CREATE OR REPLACE FUNCTION zdm_monitor_notify(p_jobs text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_jobs IS NOT NULL THEN
        PERFORM pg_notify('zdm_monitor_changes',
                          CASE WHEN length(p_jobs) > 7900 THEN '*' ELSE p_jobs END);
    END IF;
END
$$;

-- backup: the job's ID is its id.
CREATE OR REPLACE FUNCTION zdm_monitor_backup_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_jobs text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT string_agg(DISTINCT id::text, ',') INTO v_jobs FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT string_agg(DISTINCT id::text, ',') INTO v_jobs FROM old_rows;
    ELSE
        SELECT string_agg(DISTINCT id::text, ',') INTO v_jobs
        FROM (SELECT id FROM new_rows UNION ALL SELECT id FROM old_rows) changed;
    END IF;
    PERFORM zdm_monitor_notify(v_jobs);
    RETURN NULL;
END
$$;

-- backup_info and backup_log: the job's ID is backup_id.
CREATE OR REPLACE FUNCTION zdm_monitor_job_rows_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_jobs text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT string_agg(DISTINCT backup_id::text, ',') INTO v_jobs FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT string_agg(DISTINCT backup_id::text, ',') INTO v_jobs FROM old_rows;
    ELSE
        SELECT string_agg(DISTINCT backup_id::text, ',') INTO v_jobs
        FROM (SELECT backup_id FROM new_rows UNION ALL SELECT backup_id FROM old_rows) changed;
    END IF;
    PERFORM zdm_monitor_notify(v_jobs);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION zdm_monitor_everything_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('zdm_monitor_changes', '*');
    RETURN NULL;
END
$$;

-- A trigger with transition tables takes one event, so each table has one per event.
DO $$
DECLARE
    v_table text;
    v_function text;
BEGIN
    FOR v_table, v_function IN VALUES
        ('backup', 'zdm_monitor_backup_changed'),
        ('backup_info', 'zdm_monitor_job_rows_changed'),
        ('backup_log', 'zdm_monitor_job_rows_changed')
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', 'zdm_monitor_changes_on_' || v_table || '_insert', v_table);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                       'zdm_monitor_changes_on_' || v_table || '_insert', v_table, v_function);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', 'zdm_monitor_changes_on_' || v_table || '_update', v_table);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I'
                       ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                       'zdm_monitor_changes_on_' || v_table || '_update', v_table, v_function);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', 'zdm_monitor_changes_on_' || v_table || '_delete', v_table);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                       'zdm_monitor_changes_on_' || v_table || '_delete', v_table, v_function);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', 'zdm_monitor_changes_on_' || v_table || '_truncate', v_table);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION zdm_monitor_everything_changed()',
                       'zdm_monitor_changes_on_' || v_table || '_truncate', v_table);
    END LOOP;
    -- A new server or repository changes no job's answer; an update or a delete may change many.
    FOREACH v_table IN ARRAY ARRAY['server', 'repository'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', 'zdm_monitor_changes_on_' || v_table || '_all', v_table);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OR DELETE OR TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION zdm_monitor_everything_changed()',
                       'zdm_monitor_changes_on_' || v_table || '_all', v_table);
    END LOOP;
END
$$;
