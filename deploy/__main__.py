"""`python -m deploy <preview|up|refresh|destroy|outputs> --stack <name>`; see deploy/automation.py."""

from deploy.cli import main

raise SystemExit(main())
