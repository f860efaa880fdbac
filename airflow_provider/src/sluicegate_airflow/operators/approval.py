"""``ApprovalGateOperator``: a task that halts until the policy says go.

The gate describes what the next step is about to do (an export of a PII table, say), asks the
Sluicegate server when it executes, and

- passes at once when the policy allows it (one round trip, nobody is notified);
- fails at once, without retrying, when the policy denies it;
- otherwise defers to an :class:`~sluicegate_airflow.triggers.ApprovalTrigger`, so no worker
  slot is held while people decide, and resumes the moment the decision lands: approved, the
  task succeeds and downstream runs; denied, the task fails without retrying, naming who denied
  and why (or, with ``fail_on_deny=False``, skips downstream); expired, as the rule says.

It asks in ``execute``, the first moment the task is sure to run: a task that fails or is
skipped before (in ``pre_execute``, a listener) opens no request and notifies nobody, and what
a ``pre_execute`` changed is what is asked about. A resumed task takes its answer from the
trigger's event (``execute_complete``) and asks nothing again.

The gate itself is the core's (:mod:`sluicegate.gate`): ``execute`` opens it
(:meth:`~sluicegate.gate.Gate.open`, without waiting; a server it cannot reach is asked again
for :data:`OPEN_RETRY_SECONDS`, then Airflow's retries apply), the trigger waits
(:meth:`~sluicegate.gate.AsyncGate.wait`), and ``execute_complete`` settles the event's answer
(:meth:`~sluicegate.gate.Gate.settle`, which records the release). This module translates:
the task into an :class:`~sluicegate.model.Action`, a :class:`~sluicegate.model.Requester` and
an idempotency key, and the :class:`~sluicegate.gate.GateOutcome` into Airflow's success,
failure, skip or deferral (:mod:`sluicegate_airflow.utils.outcome`).

Every part of the action is templated (``kind``, ``summary``, ``inputs``, ``outputs``,
``context_data``, ``destination``, ``environment``) and rendered by Airflow's Jinja as any
operator's fields are, held in the one template field ``sluicegate_action`` (see
:attr:`_ActionGate.TEMPLATED` for why one): ``inputs`` of
``s3://bucket/exports/{{ ds }}/customers.csv`` reach the policy rendered. The action's
datasets are the gate's rendered ``inputs``/``outputs``, or else the task's inlets and
outlets, named by the core's one conversion as Airflow's OpenLineage provider names them (see
:mod:`sluicegate_airflow.utils.datasets`); one that cannot be named fails the task without
retrying.

The request's idempotency key is ``airflow:{dag_id}:{run_id}:{task_id}:{map_index}:{digest}``,
the digest that of the whole action as sent (:func:`sluicegate.idempotency.action_digest`): a
retry or a re-run of the task instance asking about the same action reattaches to the request
it opened, never a second notification; one whose rendered action changed is a new request,
asked about again, and never inherits the old action's approval.
The requester carries the task's owner and the user who triggered the run, so neither can
approve it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sluicegate_airflow.hooks.sluicegate import SluicegateHook
from sluicegate_airflow.utils.datasets import assets_of
from sluicegate_airflow.utils.lineage import operator_lineage, parent_run
from sluicegate_airflow.utils.outcome import end_unless_proceeds, xcom_result

# The core (its pydantic models, its client) is imported in the methods that ask, not here:
# every task process parses its DAG file (see the package's docstring).
if TYPE_CHECKING:
    from sluicegate.gate import GateOutcome
    from sluicegate.model import Action, Requester
    from sluicegate.wire import RequestOut

__all__ = ["ApprovalGateOperator", "idempotency_key"]

#: Added to the rule's timeout for the defer timeout, so the server's expiry decides first.
DEFER_MARGIN = timedelta(minutes=5)
#: The defer timeout when the server gives no expiry (a rule without timeout).
DEFAULT_DEFER = timedelta(days=7)
#: Seconds the gate keeps asking a server it cannot reach (or that answers 503) when it opens:
#: long enough for a restart, short enough not to hold a worker through an outage, which
#: Airflow's own task retries are for (a retry reattaches to the request).
OPEN_RETRY_SECONDS = 10.0


def idempotency_key(context: Context, action: Action | Mapping[str, Any]) -> str:
    """The gate's key for this task instance and ``action``: the same across retries and
    re-runs that ask about the same action, a new one when the action changed."""
    from sluicegate.idempotency import gate_key

    ti = context["ti"]
    return gate_key("airflow", ti.dag_id, ti.run_id, ti.task_id, _map_index(ti), action=action)


def _map_index(ti: Any) -> int:
    found = getattr(ti, "map_index", -1)
    return -1 if found is None else int(found)


class _ActionGate:
    """The gate on an action this task describes: open it in ``execute``, defer while it
    waits, and read the answer when the trigger fires. Shared by
    :class:`ApprovalGateOperator` (a gate task) and ``@task.sluicegate`` (a task whose body
    runs behind its own gate), each mixing it into its Airflow operator class."""

    #: The template field that holds the action's templated parts.
    TEMPLATED = "sluicegate_action"

    #: ``kind``, ``summary``, ``inputs``, ``outputs``, ``context``, ``destination`` and
    #: ``environment``, rendered by Airflow as one template field: its task runner validates
    #: every template field's rendered value through a pydantic TypeAdapter it builds anew on
    #: every run (``_serialize_rendered_fields``: 0.3-0.8 ms a field, bench/RESULTS.md), so six
    #: more fields would add 2-5 ms to an allowed gate, whose whole budget is 5 ms; and
    #: Airflow's UI shows the action as one JSON document, as reviewers read it.
    #: ``inputs``/``outputs`` are None when the task's inlets/outlets name the datasets.
    sluicegate_action: dict[str, Any]
    sluicegate_conn_id: str
    fail_on_deny: bool
    poll_seconds: float
    # from BaseOperator
    dag_id: str
    task_id: str
    owner: str
    inlets: list[Any]
    outlets: list[Any]
    log: Any

    def _init_gate(
        self,
        *,
        kind: str,
        summary: str = "",
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        destination: str | None = None,
        environment: str | None = None,
        context_data: Mapping[str, Any] | None = None,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        fail_on_deny: bool = True,
        poll_seconds: float = 60.0,
    ) -> None:
        self.sluicegate_action = {
            "kind": kind,
            "summary": summary,
            "inputs": list(inputs) if inputs is not None else None,
            "outputs": list(outputs) if outputs is not None else None,
            "context": dict(context_data or {}),
            "destination": destination,
            "environment": environment,
        }
        self.sluicegate_conn_id = sluicegate_conn_id
        self.fail_on_deny = fail_on_deny
        self.poll_seconds = poll_seconds

    # The action's parts by name, read from (and written to) the one template field, so that
    # they are what was rendered, and what a pre_execute changed after rendering.

    @property
    def kind(self) -> str:
        """The action's kind (``export``, ...), as rendered."""
        return str(self.sluicegate_action["kind"])

    @kind.setter
    def kind(self, value: str) -> None:
        self.sluicegate_action["kind"] = value

    @property
    def gate_inputs(self) -> list[Any] | None:
        """The gate's own ``inputs`` as rendered, or None: the task's inlets."""
        found: list[Any] | None = self.sluicegate_action["inputs"]
        return found

    @gate_inputs.setter
    def gate_inputs(self, value: Sequence[Any] | None) -> None:
        self.sluicegate_action["inputs"] = list(value) if value is not None else None

    @property
    def gate_outputs(self) -> list[Any] | None:
        """The gate's own ``outputs`` as rendered, or None: the task's outlets."""
        found: list[Any] | None = self.sluicegate_action["outputs"]
        return found

    @gate_outputs.setter
    def gate_outputs(self, value: Sequence[Any] | None) -> None:
        self.sluicegate_action["outputs"] = list(value) if value is not None else None

    def datasets(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(inputs, outputs)`` as the API's assets: the gate's own (as rendered), else the
        task's inlets and outlets. Raises AirflowFailException for one that cannot be named."""
        if self.gate_inputs is not None:
            inputs = assets_of(self.gate_inputs, where="inputs")
        else:
            inputs = assets_of(list(self.inlets or []), where="inlets")
        if self.gate_outputs is not None:
            outputs = assets_of(self.gate_outputs, where="outputs")
        else:
            outputs = assets_of(list(self.outlets or []), where="outlets")
        return inputs, outputs

    def action(self) -> Action:
        """The action this gate asks about, as rendered (and as a ``pre_execute`` left it).

        :raises AirflowFailException: a dataset that cannot be named, or an action the server
            would refuse (no retry: a retry would ask about the same action).
        """
        from sluicegate.exceptions import ActionError
        from sluicegate.model import parse_action

        inputs, outputs = self.datasets()
        templated = self.sluicegate_action
        action: dict[str, Any] = {
            "kind": self.kind,
            "summary": templated["summary"] or f"{self.kind} by {self.dag_id}.{self.task_id}",
            "inputs": inputs,
            "outputs": outputs,
            "context": templated["context"],
        }
        for optional in ("destination", "environment"):
            if templated[optional]:
                action[optional] = templated[optional]
        try:
            return parse_action(action)
        except ActionError as err:
            raise AirflowFailException(f"Sluicegate: {err}") from None

    def requester(self, context: Context) -> Requester:
        """Who asks: this task run, its owner and the user who triggered the run."""
        from sluicegate.exceptions import ActionError
        from sluicegate.model import parse_requester

        ti = context["ti"]
        dag_run = context.get("dag_run")
        triggered_by = getattr(dag_run, "triggering_user_name", None) if dag_run else None
        asking = {
            "orchestrator": "airflow",
            "job": f"{ti.dag_id}.{ti.task_id}",
            "run_id": ti.run_id,
            "step": ti.task_id,
            "try_number": int(getattr(ti, "try_number", 0) or 0),
            "map_index": _map_index(ti),
            "owner": self.owner,
            "triggered_by": triggered_by,
            "parent": parent_run(context),
        }
        try:
            return parse_requester(asking)
        except ActionError as err:
            raise AirflowFailException(f"Sluicegate: {err}") from None

    def _open_or_defer(self, context: Context) -> GateOutcome:
        """The outcome if the step may go on now; raises if refused; defers if it waits."""
        from sluicegate.exceptions import ActionError, ClientError
        from sluicegate.gate import Gate, OutcomeKind

        action = self.action()
        # Kept for the lineage facet of an older server's policy answer, which names no one.
        self._sluicegate_requester: Requester | None = self.requester(context)
        key = idempotency_key(context, action)
        try:
            with SluicegateHook(self.sluicegate_conn_id).get_conn() as client:
                outcome = Gate(client).open(
                    key, action, self._sluicegate_requester, timeout=OPEN_RETRY_SECONDS
                )
        except (ActionError, ClientError) as err:
            said = f"Sluicegate: could not open the gate: {err}"
            if isinstance(err, ClientError) and err.transient:
                # Unreachable until the gate gave up: Airflow's retries apply, and reattach.
                raise AirflowException(said) from err
            # Refused as asked (a bad token, a key that is another gate's, an action the server
            # cannot take): asking again would be refused again.
            raise AirflowFailException(said) from err
        request = outcome.request
        review = f"; review at {request.review_url}" if request.review_url else ""
        self.log.info("Sluicegate: %s%s", outcome.message, review)
        if outcome.kind is not OutcomeKind.PENDING:
            return self._ended(outcome)
        expires = request.expires_at
        timeout = expires - datetime.now(timezone.utc) + DEFER_MARGIN if expires else DEFAULT_DEFER
        from sluicegate_airflow.triggers.approval import ApprovalTrigger  # only a gate that waits

        self.defer(  # type: ignore[attr-defined]
            trigger=ApprovalTrigger(
                request.id,
                self.sluicegate_conn_id,
                self.poll_seconds,
                carry={"request_id": request.id, "review_url": request.review_url},
            ),
            method_name="execute_complete",
            timeout=max(timeout, timedelta(seconds=1)),
        )
        raise AssertionError("defer() raises")  # pragma: no cover

    def _resumed(self, event: dict[str, Any]) -> GateOutcome:
        """The outcome of the answer the trigger's event carries, settled (its release
        recorded when it let the step go on); raises if refused."""
        if event.get("status") == "error":
            raise AirflowFailException(f"Sluicegate: {event.get('error')}")
        from sluicegate.gate import Gate

        with SluicegateHook(self.sluicegate_conn_id).get_conn() as client:
            outcome = Gate(client).settle(event["request"])
        self.log.info("Sluicegate: %s", outcome.message)
        return self._ended(outcome)

    def _ended(self, outcome: GateOutcome) -> GateOutcome:
        """``outcome`` once it lets the step go on; else ends the task (fails or skips)."""
        self._sluicegate_answer = outcome.request  # for the OpenLineage facets, asked after
        return end_unless_proceeds(outcome, fail_on_deny=self.fail_on_deny)

    # ---- lineage: Airflow's OpenLineage provider asks the operator for its facets

    def get_openlineage_facets_on_start(self) -> Any:
        """The gate's inputs and outputs (the approval facet follows on complete/failure)."""
        return self._lineage(None)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs, outputs and the ``sluicegate_approval`` run facet of the passed gate."""
        return self._lineage(getattr(self, "_sluicegate_answer", None))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """The same for a gate that was denied, expired or failed to open."""
        return self._lineage(getattr(self, "_sluicegate_answer", None))

    def _lineage(self, answer: RequestOut | None) -> Any:
        try:  # the names the gate asks about
            inputs, outputs = self.datasets()
        except AirflowFailException:  # the gate fails on it; its events name no dataset
            inputs, outputs = [], []
        asked = getattr(self, "_sluicegate_requester", None)
        return operator_lineage(inputs, outputs, answer, asked)


class ApprovalGateOperator(_ActionGate, BaseOperator):
    """Halt until the action is allowed or approved (see the module's docstring).

    :param kind: the action (``export``, ``write``, ``delete``, ``grant``, ``deploy``, ...).
    :param summary: what a reviewer reads first.
    :param inputs, outputs: datasets as ``{"namespace", "name", "classifications"}`` dicts,
        Airflow assets, OpenLineage datasets or URIs; default: the task's inlets and outlets.
        Named as Airflow's OpenLineage provider names them; one that cannot be named (an
        ``AssetAlias``, an ``Asset`` without a URI) fails the task.
    :param destination: where the data goes (a bucket, a partner), shown to reviewers.
    :param environment: where the action runs (``prod``), for rules that match on it.
    :param context_data: facts for the reviewer (row counts, the query); shown escaped.
    :param sluicegate_conn_id: the ``sluicegate`` connection of the server to ask.
    :param fail_on_deny: False to skip downstream instead of failing when denied.
    :param poll_seconds: the longest one long poll of the trigger lasts (the server answers at
        once when the request ends; this only sets how often an idle wait asks again).

    ``kind``, ``summary``, ``inputs``, ``outputs``, ``context_data``, ``destination`` and
    ``environment`` are templated (Airflow shows them rendered as the one field
    ``sluicegate_action``); datasets are named after rendering.

    Returns (as its XCom) ``{"request_id", "status", "approvers"}``.
    """

    template_fields: Sequence[str] = (_ActionGate.TEMPLATED,)
    template_fields_renderers: ClassVar[dict[str, str]] = {_ActionGate.TEMPLATED: "json"}
    ui_color = "#f5d76e"

    def __init__(
        self,
        *,
        kind: str,
        summary: str = "",
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        destination: str | None = None,
        environment: str | None = None,
        context_data: Mapping[str, Any] | None = None,
        sluicegate_conn_id: str = SluicegateHook.default_conn_name,
        fail_on_deny: bool = True,
        poll_seconds: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_gate(
            kind=kind,
            summary=summary,
            inputs=inputs,
            outputs=outputs,
            destination=destination,
            environment=environment,
            context_data=context_data,
            sluicegate_conn_id=sluicegate_conn_id,
            fail_on_deny=fail_on_deny,
            poll_seconds=poll_seconds,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Ask the server; returns at once when the action may go on, else defers or raises."""
        return xcom_result(self._open_or_defer(context))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resumed by the trigger: the decision in its event lets the task succeed or not."""
        return xcom_result(self._resumed(event))
