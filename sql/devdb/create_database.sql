-- Create the development database (its name is a quoted identifier).
CREATE DATABASE {database}
