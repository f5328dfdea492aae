CALL {schema}.acgs_partition_maintenance(p_lock_timeout => {lock_timeout}, p_retries => {retries})
