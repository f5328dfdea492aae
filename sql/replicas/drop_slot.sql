-- On the primary: drop a standby's replication slot unless a standby streams from it.
SELECT pg_drop_replication_slot(slot_name)
FROM pg_replication_slots
WHERE slot_name = %(slot)s AND NOT active
