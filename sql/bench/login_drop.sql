-- Drop the RLS step's throwaway login.
DROP ROLE {login}
