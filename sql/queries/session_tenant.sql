-- The tenant bound to this session's login (migration 0007), NULL when none.
SELECT acgs_session_tenant()
