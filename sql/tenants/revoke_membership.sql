REVOKE {tenant_role} FROM {login}
