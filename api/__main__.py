"""``python -m api`` is the ``plait`` command."""

from api.cli import main

main()
