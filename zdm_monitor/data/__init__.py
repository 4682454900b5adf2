"""The data the service reads: SQL and the repository, the cache, the pool, replicas, deadlines."""
