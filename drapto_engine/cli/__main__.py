"""`python -m drapto_engine.cli`; importing this module (a package walk) runs nothing."""

import sys

from drapto_engine.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
