-- Drop a scratch database, disconnecting whatever is left connected to it.
DROP DATABASE IF EXISTS {database} WITH (FORCE)
