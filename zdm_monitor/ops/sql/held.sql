-- Of this release's functions (in order), which are missing and which the role may not execute;
-- and what an older release left: other zdm_monitor_* functions, triggers (this one creates none).
SELECT
    array(SELECT f FROM unnest(%(ours)s::text[]) WITH ORDINALITY AS a(f, i)
          WHERE NOT EXISTS (SELECT FROM pg_proc p
                            WHERE p.proname = f AND pg_function_is_visible(p.oid))
          ORDER BY i),
    array(SELECT f FROM unnest(%(ours)s::text[]) WITH ORDINALITY AS a(f, i)
          WHERE EXISTS (SELECT FROM pg_proc p
                        WHERE p.proname = f AND pg_function_is_visible(p.oid)
                          AND NOT has_function_privilege(p.oid, 'EXECUTE'))
          ORDER BY i),
    array(SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.proname LIKE 'zdm\_monitor\_%%' AND p.proname <> ALL (%(ours)s)
            AND pg_function_is_visible(p.oid) ORDER BY 1),
    array(SELECT t.tgname || ' on ' || t.tgrelid::regclass::text FROM pg_trigger t
          WHERE NOT t.tgisinternal AND t.tgname LIKE 'zdm\_monitor\_%%' ORDER BY 1)
