"""``python -m duralog`` is the ``duralog`` command."""

from duralog.cli import main

main()
