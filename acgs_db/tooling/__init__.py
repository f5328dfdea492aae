"""The operator's tooling around the library: the ``acgs-db`` command line (:mod:`.cli`), the
embedded development cluster (:mod:`.devdb`), a PgBouncer of our own (:mod:`.pgbouncer`),
migrations from Python (:mod:`.schema`) and synthetic loads (:mod:`.loader`,
:mod:`.synthetic`). Services import the library (``acgs_db``), which imports none of this but
the development cluster's URL (``create_pool()`` without a URL starts it)."""
