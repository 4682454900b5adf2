"""The development workshop of zdm-monitor: processes and data on loopback, never in production.

An embedded PostgreSQL (from the pgserver package), the local stack behind `zdm-dev serve`, the
cluster, PgBouncer, the demo data and the generator: the distribution zdm-monitor-dev, which
the service's own (zdm-monitor) neither holds nor requires. The service package, zdm_monitor,
never imports anything from here.
"""
