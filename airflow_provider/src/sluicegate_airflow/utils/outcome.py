"""The gate's outcome as Airflow ends a task: it goes on, fails without retrying, or skips.

Shared by the gate operator, ``@task.sluicegate`` and the sensor, so that the three end a task
the same way for the same outcome. Whether the step may go on is the core's answer
(:attr:`sluicegate.gate.GateOutcome.proceed`), and so is the line that says why not
(:attr:`~sluicegate.gate.GateOutcome.message`); this module only picks Airflow's exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from sluicegate.gate import GateOutcome

__all__ = ["end_unless_proceeds", "xcom_result"]


def end_unless_proceeds(outcome: GateOutcome, *, fail_on_deny: bool) -> GateOutcome:
    """``outcome`` when the step may go on; otherwise ends the task.

    :param fail_on_deny: False to skip (and so skip downstream) when a reviewer or the policy
        denied, rather than fail.
    :raises AirflowFailException: denied, expired under a rule that denies on timeout,
        cancelled, or still pending; no retry, since a retry would only reattach to the same
        answer.
    :raises AirflowSkipException: denied, with ``fail_on_deny=False``.
    """
    if outcome.proceed:
        return outcome
    from sluicegate.gate import OutcomeKind

    message = f"Sluicegate: {outcome.message}"  # "request 0197... was denied by bob: ..."
    if outcome.kind is OutcomeKind.DENIED and not fail_on_deny:
        raise AirflowSkipException(message)
    raise AirflowFailException(message)


def xcom_result(outcome: GateOutcome) -> dict[str, Any]:
    """What a gate task returns as its XCom: ``{"request_id", "status", "approvers"}``."""
    request = outcome.request
    approvers = list(outcome.approvers)
    return {"request_id": request.id, "status": request.status, "approvers": approvers}
