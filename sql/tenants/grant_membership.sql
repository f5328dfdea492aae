GRANT {tenant_role} TO {login}
