import sys

from softspike.cli import main

sys.exit(main())
