"""``python -m acgs_db`` runs the command line."""

from acgs_db.tooling.cli import main

main()
