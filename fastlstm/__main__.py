"""python -m fastlstm: the same as the `fastlstm` command."""
import sys

from .cli import main

sys.exit(main())
