import sys

from drapto_engine.cli.main import main

sys.exit(main())
