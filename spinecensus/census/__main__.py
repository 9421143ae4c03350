"""``python -m spinecensus.census <verb> ...``: the commands the workflow's rules run
(:mod:`spinecensus.census.jobs`)."""

import sys

from spinecensus.census.jobs import main

if __name__ == "__main__":
    sys.exit(main())
