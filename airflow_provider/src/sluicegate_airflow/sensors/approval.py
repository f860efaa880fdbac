"""``ApprovalSensor``: waits for a request opened elsewhere to be decided.

For a request some other task or system opened (``sluicegate requests`` in a script, a gate in
another DAG): the sensor checks it once and, while it is pending, defers to an
:class:`~sluicegate_airflow.triggers.ApprovalTrigger` (or pokes, with ``deferrable=False``).
The decision ends the task as the gate's does: approved, it succeeds; denied, it fails without
retrying (or skips, with ``fail_on_deny=False``).

It reads the request through the core's gate (:meth:`sluicegate.gate.Gate.wait`, asking once,
and the trigger's :meth:`~sluicegate.gate.AsyncGate.wait`) and ends the task by its
:class:`~sluicegate.gate.GateOutcome`. It records no release: the request is not its own, and
whoever opened it records that its step went on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from sluicegate_airflow.hooks.sluicegate import SluicegateHook
from sluicegate_airflow.utils.outcome import end_unless_proceeds

__all__ = ["ApprovalSensor"]


class ApprovalSensor(BaseSensorOperator):
    """Wait for an existing request to be decided; deferrable.

    :param request_id: the request's id (templated).
    :param sluicegate_conn_id: the ``sluicegate`` connection of the server that holds it.
    :param fail_on_deny: False to skip downstream instead of failing when denied.
    :param deferrable: False to poke (holding a worker slot) instead of deferring.
    :param poll_seconds: the longest one long poll of the trigger lasts (see
        :class:`~sluicegate_airflow.triggers.ApprovalTrigger`).
    """

    template_fields: Sequence[str] = ("request_id",)

    def __init__(
        self,
        *,
        request_id: str,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        fail_on_deny: bool = True,
        deferrable: bool = True,
        poll_seconds: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request_id = request_id
        self.sluicegate_conn_id = sluicegate_conn_id
        self.fail_on_deny = fail_on_deny
        self.deferrable = deferrable
        self.poll_seconds = poll_seconds

    def poke(self, context: Context) -> bool:
        """True once the request is decided and lets the step go on; raises if it does not."""
        from sluicegate.gate import Gate, OutcomeKind

        with SluicegateHook(self.sluicegate_conn_id).get_conn() as client:
            # timeout=0: the request as it is now; an error is raised at once (Airflow's
            # retries apply), as any sensor's poke raises
            outcome = Gate(client).wait(self.request_id, timeout=0, settle=False)
        if outcome.kind is OutcomeKind.PENDING:
            return False
        end_unless_proceeds(outcome, fail_on_deny=self.fail_on_deny)
        return True

    def execute(self, context: Context) -> Any:
        """One check, then defer to the trigger while the request is pending."""
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        from sluicegate_airflow.triggers.approval import ApprovalTrigger

        self.defer(
            trigger=ApprovalTrigger(self.request_id, self.sluicegate_conn_id, self.poll_seconds),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),  # the sensor's own timeout
        )
        raise AssertionError("defer() raises")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        """Resumed by the trigger: the decision in its event ends the task."""
        if event.get("status") == "error":
            raise AirflowFailException(f"Sluicegate: {event.get('error')}")
        from sluicegate.gate import GateOutcome

        end_unless_proceeds(GateOutcome.of(event["request"]), fail_on_deny=self.fail_on_deny)
