"""``python -m memstore`` is the ``memstore`` command."""

from memstore.cli import main

main(prog_name="memstore")
