"""``python -m ecg_stream.cli``: the command line, as the ``ecg-stream`` script runs it."""

import sys

from ecg_stream.cli import main

sys.exit(main())
