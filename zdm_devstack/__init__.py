"""The development workshop of zdm-monitor: processes and data on loopback, never in production.

An embedded PostgreSQL (from the pgserver package, which only the `dev` extra installs), the
local stack behind `zdm-monitor serve`, the cluster, PgBouncer, the demo data and the
generator. The service package, zdm_monitor, never imports anything from here.
"""
