import sys

from talmts.cli import main

sys.exit(main())
