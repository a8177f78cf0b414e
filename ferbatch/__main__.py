"""``python -m ferbatch`` runs the command line."""

from ferbatch.cli import main

main()
