import sys

from iot.cli import main

sys.exit(main())
