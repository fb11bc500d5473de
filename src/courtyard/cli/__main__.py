"""``python -m courtyard.cli`` runs the command line."""

from courtyard.cli import main

main()
