"""``python -m initdiag`` is the ``initdiag`` command."""

from initdiag.cli import main

raise SystemExit(main())
