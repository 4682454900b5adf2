"""The data the service reads: SQL and the repository, the snapshot cache, the pool, replicas,
deadlines."""
