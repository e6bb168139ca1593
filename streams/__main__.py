"""``python -m reverify.streams`` is the ``reverify`` command."""

from reverify.streams.cli import main

main()
