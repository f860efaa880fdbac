"""TaskFlow decorators of the Sluicegate provider: ``@task.sluicegate``
(:func:`sluicegate_task`), a task whose body runs behind its own approval gate."""

from __future__ import annotations

from sluicegate_airflow.decorators.sluicegate import sluicegate_task

__all__ = ["sluicegate_task"]
