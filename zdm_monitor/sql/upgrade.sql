-- Upgrade steps for zdm-monitor's own database objects, applied by init-db after schema.sql and
-- before the functions are (re)created. Each step is idempotent and says which release it
-- upgrades from; tests/test_db.py installs each old object and checks that its step removes it.
-- CREATE OR REPLACE keeps a function's grants, but cannot change its arguments or result
-- columns: an old signature must be dropped here, or it would stay beside the new one.

-- 0.1.0 before the log cursor: the read function took 13 arguments, without p_after and
-- p_detail, and returned fewer columns.
DROP FUNCTION IF EXISTS zdm_monitor_job_snapshot(
    bigint, text, text, text, text, numeric, text, text, text, text, text, integer, integer
);
