import sys

from videozoo.cli import main

sys.exit(main())
