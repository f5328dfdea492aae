-- (Re)writes acgs_history(tenant, decision, hash, limit), the history look-up (migration 0013),
-- from the catalog: one statement per partition of p_parent, newest month first, each naming its
-- partition, so that a call plans, locks and opens only the partitions it reads and stops as
-- soon as it has p_limit rows. A look-up on the parent costs every partition instead: its
-- generic plan locks and opens all of them (18 at 13 months of retention, 4 premade and the
-- default: 38 relations with their indexes), whatever it reads.
--
-- The function written (plpgsql: each statement is planned once per session and locks only the
-- partition it names, when it runs; STABLE: one snapshot for the whole walk, so rows moved by
-- maintenance out of the default partition mid-walk are seen exactly once):
-- 1. The newest partition that has begun (its lower bound <= now(); the branch is chosen at
--    call time, so a month that starts between two maintenance runs is handled) is read in one
--    statement whose one-time filter (an InitPlan) is the guard: the decision has no rows in
--    the default partition (late or early rows maintenance has not moved yet), none in the
--    partitions that lie ahead of now() (premade months: future-dated rows). When the guard
--    fails (rare: those partitions are normally empty) the look-up is answered by the parent
--    (every partition: exactly the old statement), so the answer is the newest rows of the
--    decision across all partitions whatever maintenance has or has not done yet.
-- 2. Then the older partitions, newest first, one statement each, until p_limit rows are found.
-- Row-level security: it reads the partitions as their owner (SECURITY DEFINER; partitions carry
-- no grants), so it applies the permissive policies of p_parent itself, read here from the
-- catalog, for the session's login (session_user, as acgs_session_tenant() does): a superuser
-- or a member of a role whose policy is USING (true) sees every tenant; a member of the tenant
-- role only its bound tenant (tenant_id = acgs_session_tenant()); a BYPASSRLS login every
-- tenant; any other login nothing; a login without SELECT on p_parent is refused. A policy of
-- another shape stops this function rather than be ignored.
--
-- Partitions created, attached, detached or dropped by anything but acgs_partition_maintenance()
-- (which calls this function in the same transaction) need SELECT acgs_history_compile()
-- afterwards: a partition this function does not name is not read. (Checking pg_inherits on
-- every call, measured, cost a third of the look-up.)
--
-- Partition names and bounds come from the catalog (pg_inherits, relpartbound), never from
-- input. The function is rewritten only when its text would change (a rewrite invalidates every
-- session's cached plans of it), under a transaction-scoped advisory lock so that two rewrites
-- never race. Called by the migration and by acgs_partition_maintenance() in the transaction
-- that creates or drops partitions. Runs as its caller (a superuser or a member of the owner
-- role; CREATE OR REPLACE keeps the function's owner and grants). Returns true when it rewrote
-- the function. (No percent sign in here: Alembic's offline rendering would double it.)
CREATE OR REPLACE FUNCTION acgs_history_compile(
    p_parent regclass DEFAULT 'constitutional_validations'::regclass
) RETURNS boolean
LANGUAGE plpgsql
AS $compile$
DECLARE
    home text;
    parent text;
    default_table text;
    part record;
    pol record;
    see_all text := 'false';
    see_own text := 'false';
    match constant text := ' v WHERE v.tenant_id = p_tenant AND v.decision_id = p_decision'
                           || ' AND v.constitutional_hash = p_hash';
    newest constant text := E'\n         ORDER BY v.created_at DESC, v.id DESC LIMIT wanted;';
    ahead text := '';          -- the guard's probes of the partitions ahead of this one
    guard text;
    first_branch text := '';   -- step 1: one branch per partition that may be the newest begun
    walk text := '';           -- step 2: every partition, skipped unless older than step 1's
    body text;
    current_body text;
    core text;
    header text;
    checks text;
    variant text;
    grant_to record;
    rewritten boolean := false;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('acgs_history_compile'), p_parent::oid::integer);
    SELECT quote_ident(n.nspname), quote_ident(n.nspname) || '.' || quote_ident(c.relname)
      INTO STRICT home, parent
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_parent;

    IF NOT (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = p_parent) THEN
        see_all := 'true';
    END IF;
    FOR pol IN
        SELECT p.polname, p.polpermissive, p.polroles,
               pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual
          FROM pg_catalog.pg_policy p
         WHERE p.polrelid = p_parent AND p.polcmd IN ('r', '*')
         ORDER BY p.polname
    LOOP
        IF NOT pol.polpermissive THEN
            RAISE EXCEPTION USING MESSAGE = 'acgs_history_compile: restrictive policy '
                || pol.polname || ' on ' || parent || ' is not supported';
        END IF;
        IF pol.qual = 'true' THEN
            see_all := see_all || CASE WHEN 0 = ANY (pol.polroles) THEN ' OR true' ELSE
                (SELECT string_agg(' OR pg_catalog.pg_has_role(pg_catalog.session_user(), '
                                   || quote_literal(pg_catalog.pg_get_userbyid(o))
                                   || ', ''MEMBER'')', '' ORDER BY pg_catalog.pg_get_userbyid(o))
                   FROM unnest(pol.polroles) AS o) END;
        ELSIF pol.qual ~ ('^\(\(tenant_id\)::text = \(\( SELECT ([a-z_]+\.)?acgs_session_tenant\(\)'
                          || ' AS acgs_session_tenant\)\)::text\)$') THEN
            see_own := see_own || CASE WHEN 0 = ANY (pol.polroles) THEN ' OR true' ELSE
                (SELECT string_agg(' OR pg_catalog.pg_has_role(pg_catalog.session_user(), '
                                   || quote_literal(pg_catalog.pg_get_userbyid(o))
                                   || ', ''MEMBER'')', '' ORDER BY pg_catalog.pg_get_userbyid(o))
                   FROM unnest(pol.polroles) AS o) END;
        ELSE
            RAISE EXCEPTION USING MESSAGE = 'acgs_history_compile: policy ' || pol.polname
                || ' on ' || parent || ' (USING ' || pol.qual || ') is not supported';
        END IF;
    END LOOP;

    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) INTO default_table
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = p_parent AND c.relpartbound IS NOT NULL
       AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';

    FOR part IN
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
               quote_literal(b.bound[1]::timestamptz::text) || '::timestamptz' AS lower_bound
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                          '^FOR VALUES FROM \(''([^'']+)''\) TO \(''[^'']+''\)$')
                     AS b(bound)
         WHERE i.inhparent = p_parent AND b.bound IS NOT NULL
         ORDER BY b.bound[1]::timestamptz DESC
    LOOP
        guard := coalesce('EXISTS (SELECT 1 FROM ' || default_table || match || ')', 'false')
                 || ahead;
        first_branch := first_branch
            || CASE WHEN first_branch = '' THEN E'\n    IF ' ELSE E'\n    ELSIF ' END
            || 'now() >= ' || part.lower_bound || ' THEN'
            || E'\n        begun := ' || part.lower_bound || ';'
            || E'\n        RETURN QUERY SELECT v.* FROM ' || part.name || match
            || E'\n           AND NOT (' || guard || ')' || newest
            || E'\n        GET DIAGNOSTICS got = ROW_COUNT;'
            || E'\n        IF got = 0 THEN'
            || E'\n            everywhere := ' || guard || ';'
            || E'\n        ELSE'
            || E'\n            everywhere := false;'
            || E'\n        END IF;';
        walk := walk
            || E'\n    IF ' || part.lower_bound || ' < begun THEN'
            || E'\n        RETURN QUERY SELECT v.* FROM ' || part.name || match || newest
            || E'\n        GET DIAGNOSTICS got = ROW_COUNT;'
            || E'\n        wanted := wanted - got;'
            || E'\n        IF wanted <= 0 THEN RETURN; END IF;'
            || E'\n    END IF;';
        ahead := ahead || E'\n                  OR EXISTS (SELECT 1 FROM ' || part.name || match || ')';
    END LOOP;

    core := E'\n    IF p_limit < 0 THEN'
        || E'\n        RAISE EXCEPTION USING ERRCODE = ''invalid_row_count_in_limit_clause'','
        || E'\n            MESSAGE = ''LIMIT must not be negative'';'
        || E'\n    END IF;'
        || E'\n    IF wanted = 0 THEN'
        || E'\n        RETURN;'
        || E'\n    END IF;'
        || E'\n    -- 1. The newest partition that has begun, unless the guard sends it to the parent.'
        || first_branch
        || CASE WHEN first_branch = '' THEN '' ELSE E'\n    END IF;' END
        || E'\n    IF everywhere THEN'
        || E'\n        RETURN QUERY SELECT v.* FROM ' || parent || match || newest
        || E'\n        RETURN;'
        || E'\n    END IF;'
        || E'\n    wanted := wanted - got;'
        || E'\n    IF wanted <= 0 THEN'
        || E'\n        RETURN;'
        || E'\n    END IF;'
        || E'\n    -- 2. The older partitions, newest first, until the limit is met.'
        || walk
        || E'\nEND\n';
    header := E'\n-- Written by acgs_history_compile() from the partitions of ' || parent
        || E' and its\n-- policies: do not edit.'
        || E'\nDECLARE'
        || E'\n    wanted bigint := coalesce(p_limit, 9223372036854775807);'
        || E'\n    got bigint := 0;'
        || E'\n    begun timestamptz;'
        || E'\n    everywhere boolean := true;'
        || E'\nBEGIN';
    -- acgs_history_scoped(): the policies of the parent, for the session's login, first.
    checks := E'\n    IF NOT pg_catalog.has_table_privilege(pg_catalog.session_user(), '
        || quote_literal(parent) || ', ''SELECT'') THEN'
        || E'\n        RAISE EXCEPTION USING ERRCODE = ''insufficient_privilege'','
        || E'\n            MESSAGE = ''permission denied for table '' || '
        || quote_literal(parent) || ';'
        || E'\n    END IF;'
        || E'\n    -- The policies of ' || parent || E', for the session\'s login.'
        || E'\n    IF ' || see_all || ' THEN'
        || E'\n        NULL;'
        || E'\n    ELSIF (' || see_own || ')'
        || E'\n          AND p_tenant = ' || home || '.acgs_session_tenant() THEN'
        || E'\n        NULL;'
        || E'\n    ELSIF NOT coalesce((SELECT r.rolbypassrls FROM pg_catalog.pg_roles r'
        || E'\n                        WHERE r.rolname = pg_catalog.session_user()), false) THEN'
        || E'\n        RETURN;'
        || E'\n    END IF;';

    -- The roles whose policy shows them every row may read the partitions directly (they see
    -- nothing more than through the parent); acgs_history() runs with their privileges.
    FOR grant_to IN
        SELECT DISTINCT quote_ident(r.rolname) AS role_name, c.oid AS part_oid,
               quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS part_name
          FROM pg_catalog.pg_policy p
          CROSS JOIN LATERAL unnest(p.polroles) AS o(role_oid)
          JOIN pg_catalog.pg_roles r ON r.oid = o.role_oid
          JOIN pg_catalog.pg_inherits i ON i.inhparent = p_parent
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE p.polrelid = p_parent AND p.polcmd IN ('r', '*') AND p.polpermissive
           AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'
           AND r.oid <> c.relowner
           AND pg_catalog.has_table_privilege(r.oid, p_parent, 'SELECT')
           AND NOT pg_catalog.has_table_privilege(r.oid, c.oid, 'SELECT')
    LOOP
        EXECUTE 'GRANT SELECT ON ' || grant_to.part_name || ' TO ' || grant_to.role_name;
    END LOOP;

    FOREACH variant IN ARRAY ARRAY['acgs_history', 'acgs_history_scoped'] LOOP
        body := header || CASE WHEN variant = 'acgs_history' THEN '' ELSE checks END || core;
        SELECT p.prosrc INTO current_body FROM pg_catalog.pg_proc p
         WHERE p.oid = to_regprocedure(home || '.' || variant || '(character varying,'
                                       || ' character varying, character varying, integer)');
        CONTINUE WHEN current_body IS NOT DISTINCT FROM body;
        EXECUTE 'CREATE OR REPLACE FUNCTION ' || home || '.' || variant || '('
             || 'p_tenant character varying, p_decision character varying,'
             || ' p_hash character varying, p_limit integer)'
             || ' RETURNS SETOF ' || parent
             || CASE WHEN variant = 'acgs_history'
                     THEN ' LANGUAGE plpgsql STABLE SECURITY INVOKER'
                     ELSE ' LANGUAGE plpgsql STABLE SECURITY DEFINER'
                          || ' SET search_path = ' || home || ', pg_temp' END
             || ' AS ' || quote_literal(body);
        rewritten := true;
    END LOOP;
    RETURN rewritten;
END
$compile$
