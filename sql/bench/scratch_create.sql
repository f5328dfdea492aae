-- A scratch database for a benchmark (its name is an identifier made by the code).
CREATE DATABASE {database}
