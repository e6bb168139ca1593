"""``python -m streams`` is the ``reverify`` command."""

from streams.cli import main

main()
