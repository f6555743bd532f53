"""``python -m data.synthetic``: :func:`data.synthetic.command.main`."""
import sys

from data.synthetic.command import main

sys.exit(main())
