import sys

from hmer.cli import main

sys.exit(main())
