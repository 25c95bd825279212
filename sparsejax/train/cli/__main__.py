"""``python -m sparsejax.train.cli``: the ``sparsejax`` command."""

from sparsejax.train.cli.commands import main

raise SystemExit(main())
