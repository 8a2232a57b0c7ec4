"""``python -m statemachine`` runs the phasekit command line."""

from .cli import main

main()
