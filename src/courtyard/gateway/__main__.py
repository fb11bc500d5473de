"""``python -m courtyard.gateway``: run gateway worker processes (see ``--help``)."""

from courtyard.gateway._worker import main

raise SystemExit(main())
