-- The role's rights on ZDM's tables (in order): superuser, tables it cannot see, tables it may
-- not read, its write rights on each table, and the tables it owns.
SELECT r.rolsuper,
    array(SELECT t FROM unnest(%(tables)s::text[]) t WHERE to_regclass(t) IS NULL),
    array(SELECT t FROM unnest(%(tables)s::text[]) t
          WHERE NOT has_table_privilege(to_regclass(t), 'SELECT')),
    array(SELECT array[t, string_agg(w, ', ' ORDER BY j)]
          FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS a(t, i),
               unnest(%(writes)s::text[]) WITH ORDINALITY AS b(w, j)
          WHERE CASE WHEN w IN ('INSERT', 'UPDATE')
                     THEN has_any_column_privilege(to_regclass(t), w)
                     ELSE has_table_privilege(to_regclass(t), w) END
          GROUP BY t, i ORDER BY i),
    array(SELECT t FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS a(t, i)
          JOIN pg_class c ON c.oid = to_regclass(t)
          WHERE pg_has_role(c.relowner, 'USAGE') ORDER BY i)
FROM pg_roles r WHERE r.rolname = current_user
