"""``python -m acgs_db`` runs the command line."""

from acgs_db.cli import main

main()
