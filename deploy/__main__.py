"""`python -m deploy <preview|up|refresh|destroy|outputs> --stack <name>` (deploy/automation.py), or
`python -m deploy window <open|close> --stack <name>` (deploy/window.py)."""

from deploy.cli import main

raise SystemExit(main())
