"""What a database's schema is made of, read from the catalog as comparable definitions.

``definitions(url)`` returns, per kind of object, a sorted list of one line per object: its name
and its full definition as PostgreSQL prints it (``format_type``, ``pg_get_constraintdef``,
``pg_get_indexdef``, ``pg_get_functiondef``, ``pg_get_viewdef``, ``pg_get_triggerdef``, policies,
ACLs, ...). Two databases whose definitions are equal have the same schema, down to function
bodies, view queries and grants; ``difference`` says which lines differ. Privileges are the
effective ones: a NULL ACL (the defaults) reads as what it grants, so a REVOKE that leaves the
defaults written out compares equal to never having granted anything.
"""

from __future__ import annotations

import psycopg

# The effective privileges of an ACL column, sorted: NULL stands for the defaults (acldefault).
ACL_FUNCTION = """
    CREATE FUNCTION pg_temp.acl(acl aclitem[], kind "char", owner oid) RETURNS text
    LANGUAGE sql STABLE
    RETURN (SELECT array_agg(x::text ORDER BY x::text)::text
            FROM unnest(coalesce(acl, acldefault(kind, owner))) x)
"""


# Each query returns one text column: a line that names the object and holds its definition.
# The setting acgs.catalog_schema names the application's schema (the queries take no
# parameters, so their format() placeholders reach the server as they are).
QUERIES: dict[str, str] = {
    "relations": """
        SELECT format('%s kind=%s persistence=%s options=%s partkey=%s bound=%s rls=%s/%s'
                      ' owner=%s acl=%s',
                      c.relname, c.relkind, c.relpersistence, c.reloptions,
                      pg_get_partkeydef(c.oid), pg_get_expr(c.relpartbound, c.oid),
                      c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner),
                      pg_temp.acl(c.relacl,
                                  (CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char",
                                  c.relowner))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_setting('acgs.catalog_schema')
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    """,
    "columns": """
        SELECT format('%s.%s #%s %s notnull=%s default=%s identity=%s generated=%s',
                      c.relname, a.attname,
                      -- the position among live columns: a column dropped by a downgrade and
                      -- added again by an upgrade gets a new attnum but the same place
                      row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
                      format_type(a.atttypid, a.atttypmod),
                      a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity,
                      a.attgenerated)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = current_setting('acgs.catalog_schema')
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
    """,
    "constraints": """
        SELECT format('%s %s: %s', c.relname, k.conname, pg_get_constraintdef(k.oid))
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_setting('acgs.catalog_schema')
    """,
    "indexes": """
        SELECT pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_setting('acgs.catalog_schema')
    """,
    "functions": """
        SELECT format(E'%s-- owner=%s acl=%s', pg_get_functiondef(p.oid),
                      pg_get_userbyid(p.proowner),
                      pg_temp.acl(p.proacl, 'f', p.proowner))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = current_setting('acgs.catalog_schema') AND p.prokind IN ('f', 'p')
    """,
    "views": """
        SELECT format('%s: %s', c.relname, pg_get_viewdef(c.oid))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_setting('acgs.catalog_schema') AND c.relkind IN ('v', 'm')
    """,
    "triggers": """
        SELECT format('%s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled)
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_setting('acgs.catalog_schema') AND NOT t.tgisinternal
    """,
    "policies": """
        SELECT format('%s %s %s to=%s for=%s using=%s check=%s', tablename, policyname,
                      permissive, roles, cmd, qual, with_check)
        FROM pg_policies WHERE schemaname = current_setting('acgs.catalog_schema')
    """,
    "statistics": """
        SELECT pg_get_statisticsobjdef(s.oid)
        FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
        WHERE n.nspname = current_setting('acgs.catalog_schema')
    """,
    "schema": """
        SELECT format('%s owner=%s acl=%s', nspname, pg_get_userbyid(nspowner),
                      pg_temp.acl(nspacl, 'n', nspowner))
        FROM pg_namespace WHERE nspname = current_setting('acgs.catalog_schema')
    """,
    "extensions": """
        SELECT format('%s %s in %s', e.extname, e.extversion, n.nspname)
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    """,
}

PARTMAN_CONFIG = """
    SELECT format('%s control=%s interval=%s type=%s premake=%s retention=%s keep_table=%s'
                  ' keep_index=%s infinite=%s template=%s default=%s',
                  parent_table, control, partition_interval, partition_type, premake, retention,
                  retention_keep_table, retention_keep_index, infinite_time_partitions,
                  template_table, inherit_privileges)
    FROM partman.part_config
"""


def definitions(url: str, schema: str = "public") -> dict[str, list[str]]:
    """Every object of ``schema`` (and pg_partman's configuration) as sorted definition lines."""
    found: dict[str, list[str]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT set_config('acgs.catalog_schema', %s, false)", [schema])
        conn.execute(ACL_FUNCTION)
        for kind, query in QUERIES.items():
            rows = conn.execute(query).fetchall()
            found[kind] = sorted(str(row[0]) for row in rows)
        if conn.execute("SELECT to_regclass('partman.part_config')").fetchone() != (None,):
            found["partman"] = sorted(str(r[0]) for r in conn.execute(PARTMAN_CONFIG))
        else:
            found["partman"] = []
    return found


def difference(before: dict[str, list[str]], after: dict[str, list[str]]) -> str:
    """The lines only one side has, per kind ('' when both are equal)."""
    out: list[str] = []
    for kind in sorted(before.keys() | after.keys()):
        old, new = set(before.get(kind, [])), set(after.get(kind, []))
        out.extend(f"{kind}: - {line}" for line in sorted(old - new))
        out.extend(f"{kind}: + {line}" for line in sorted(new - old))
    return "\n".join(out)
