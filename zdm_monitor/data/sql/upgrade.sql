-- Upgrade steps for zdm-monitor's own database objects, applied by init-db after schema.sql and
-- before the functions are (re)created. Each step is idempotent, says which release it upgrades
-- from, and takes no lock on ZDM's tables unless there is something to remove;
-- tests/data/test_database.py installs each old object and checks that its step removes it.
-- CREATE OR REPLACE keeps a function's grants, but cannot change its arguments or result
-- columns: an old signature must be dropped here, or it would stay beside the new one.

-- 0.1.0 before the log cursor took 13 arguments; 0.1.0 with it returned no version column;
-- 0.2.0 returned whether the filters matched, not which did not: every signature of the two
-- read functions without the mismatched column goes.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.proname IN ('zdm_monitor_job_snapshot', 'zdm_monitor_server_snapshot')
          AND pg_function_is_visible(p.oid)
          AND NOT 'mismatched' = ANY (coalesce(p.proargnames, '{}'))
    LOOP
        EXECUTE format('DROP FUNCTION %s', v_function);
    END LOOP;
END
$$;

-- 0.1.0's snapshot cache learnt of changes from statement-level triggers on ZDM's tables that
-- sent NOTIFY at each commit: they slowed ZDM's writers and could fail their writes. Each
-- trigger goes (dropping one waits for the writers' open transactions on its table: see
-- schema.apply_schema), then the functions they ran.
DO $$
DECLARE
    v_trigger record;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname, t.tgrelid::regclass AS relation FROM pg_trigger t
        WHERE NOT t.tgisinternal AND t.tgname LIKE 'zdm\_monitor\_changes\_on\_%'
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_trigger.tgname, v_trigger.relation);
    END LOOP;
END
$$;
DROP FUNCTION IF EXISTS zdm_monitor_backup_changed();
DROP FUNCTION IF EXISTS zdm_monitor_job_rows_changed();
DROP FUNCTION IF EXISTS zdm_monitor_everything_changed();
DROP FUNCTION IF EXISTS zdm_monitor_notify(text);
