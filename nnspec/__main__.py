import sys

from nnspec.cli.main import main

sys.exit(main())
