CALL {schema}.acgs_partition_maintenance()
