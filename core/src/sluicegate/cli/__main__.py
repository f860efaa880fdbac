"""``python -m sluicegate.cli``: the ``sluicegate`` command where its script is not installed
(the demo's approver process runs it so)."""

from __future__ import annotations

from sluicegate.cli import main

if __name__ == "__main__":
    main()
