-- Demo data: the seed's examples and one job for each shape the contract describes.

INSERT INTO server (id, name, os) VALUES
    (1, 'linux-server-01', 'linux'),
    (2, 'windows-server-01', 'windows');

INSERT INTO repository (id, type, path) VALUES
    (1, 'nfs', '/backup/linux-server-01'),
    (2, 'smb', '\\backup-server\backups');

INSERT INTO backup (id, name, server_id, mode, partition, drive, repository_id) VALUES
    (1, 'daily-backup',      1, 'full',      '/',        NULL, 1),
    (2, 'daily-backup-win',  2, 'increment', NULL,       'C:', 2),
    (3, 'weekly-smart',      1, 'smart',     '/var/log', NULL, 2),
    (4, 'bulk-data',         1, 'full',      '/data',    NULL, 1),
    (5, '일일-백업',          2, 'full',      NULL,       'D:', 2),
    (6, 'orphan-definition', 1, 'full',      '/home',    NULL, 1);

INSERT INTO backup_info
    (backup_id, status, percent, message, started_at, ended_at, last_report_at) VALUES
    (1, 'complete',   100, 'Backup completed successfully',
        '2025-01-15 02:00:00+00', '2025-01-15 02:30:00+00', '2025-01-15 02:30:00+00'),
    (2, 'processing', 60,  'Processing files...',
        '2025-01-15 02:00:00+00', NULL, '2025-01-15 02:20:00+00'),
    (3, 'scheduled',  0,   NULL, NULL, NULL, NULL),
    (4, 'processing', 45,  'Copying /data',
        '2025-01-15 01:00:00+00', NULL, '2025-01-15 01:41:40+00'),
    (5, 'error',      10,  'Network error',
        '2025-01-15 03:00:00+00', '2025-01-15 03:05:12+00', '2025-01-15 03:05:12+00'),
    (7, 'processing', 30,  'Processing files...',
        '2025-01-15 04:00:00+00', NULL, '2025-01-15 04:10:00+00');

INSERT INTO backup_log (backup_id, line, logged_at, message) VALUES
    (1, 1, '2025-01-15 02:00:00+00', 'Starting backup...'),
    (1, 2, '2025-01-15 02:00:05+00', 'Processing files...'),
    (1, 3, '2025-01-15 02:30:00+00', 'Backup completed'),
    (2, 1, '2025-01-15 02:00:00+00', 'Starting backup...'),
    (2, 2, '2025-01-15 02:00:05+00', 'Processing files...'),
    (5, 1, '2025-01-15 03:00:00+00', 'Starting backup...'),
    (5, 2, '2025-01-15 03:00:04+00', 'Connecting to \\backup-server\backups'),
    (5, 3, '2025-01-15 03:05:12+00', 'Network error'),
    (7, 1, '2025-01-15 04:00:00+00', 'Starting backup...');

INSERT INTO backup_log (backup_id, line, logged_at, message)
SELECT 4, n, timestamptz '2025-01-15 01:00:00+00' + n * interval '10 seconds', 'line ' || n
FROM generate_series(1, 250) AS n;

-- Later inserts that omit ids must not collide with the ids above.
SELECT setval(pg_get_serial_sequence('server', 'id'), (SELECT max(id) FROM server));
SELECT setval(pg_get_serial_sequence('repository', 'id'), (SELECT max(id) FROM repository));
SELECT setval(pg_get_serial_sequence('backup', 'id'), (SELECT max(id) FROM backup));
