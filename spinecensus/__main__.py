import sys

from spinecensus.cli import main

sys.exit(main())
