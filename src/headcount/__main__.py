"""``python -m headcount``: the command-line interface."""

from headcount.cli.main import main

raise SystemExit(main())
