"""`python -m signing_gateway` runs the command line."""

from signing_gateway.cli import main

raise SystemExit(main())
