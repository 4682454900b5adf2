-- The server's version, as a number and as it names itself, and the role connected as.
SELECT current_setting('server_version_num')::int, current_setting('server_version'), current_user
