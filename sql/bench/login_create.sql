-- A throwaway tenant login for the RLS step (an identifier, a password literal).
CREATE ROLE {login} LOGIN PASSWORD {password}
