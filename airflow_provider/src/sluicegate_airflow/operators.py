"""``ApprovalGateOperator`` and ``ApprovalSensor``: a task that halts until the policy says go.

The gate describes what the next step is about to do (an export of a PII table, say), asks the
Sluicegate server, and

- passes at once when the policy allows it (one round trip, nobody is notified);
- fails at once, without retrying, when the policy denies it;
- otherwise defers to an :class:`~sluicegate_airflow.triggers.ApprovalTrigger`, so no worker
  slot is held while people decide, and resumes the moment the decision lands: approved, the
  task succeeds and downstream runs; denied, the task fails without retrying, naming who denied
  and why (or, with ``fail_on_deny=False``, skips downstream); expired, as the rule says.

The gate sends its request as soon as Airflow's task runner has rendered the task's templates
and reads the answer when the task executes: the server works on it while the runner does its
own work in between (sending the rendered fields, the listeners, ``pre_execute``), so the round
trip overlaps that work instead of adding to it. Nothing the gate guards runs before the
answer, and the answer is used only for the action ``execute`` would ask about.

Every part of the action is templated (``kind``, ``summary``, ``inputs``, ``outputs``,
``context_data``, ``destination``, ``environment``), as one template field: ``inputs`` of
``s3://bucket/exports/{{ ds }}/customers.csv`` reach the policy rendered. The action's
datasets are the gate's rendered ``inputs``/``outputs``, or else the task's inlets and
outlets, named as Airflow's OpenLineage provider names them (see
:mod:`sluicegate_airflow.datasets`); one that cannot be named fails the task without retrying.

The request's idempotency key is ``airflow:{dag_id}:{run_id}:{task_id}:{map_index}:{digest}``,
the digest that of the whole action as sent (:func:`sluicegate.idempotency.action_digest`): a
retry or a re-run of the task instance asking about the same action reattaches to the request
it opened, never a second notification; one whose rendered action changed is a new request,
asked about again, and never inherits the old action's approval.
The requester carries the task's owner and the user who triggered the run, so neither can
approve it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import jinja2.nativetypes
from airflow.sdk import BaseOperator, BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from sluicegate.client import GateRefused, SluicegateClient
from sluicegate.exceptions import ClientError
from sluicegate.idempotency import action_digest
from sluicegate.wire import RequestOut
from sluicegate_airflow.datasets import assets_of
from sluicegate_airflow.hooks import SluicegateHook
from sluicegate_airflow.triggers import ApprovalTrigger

__all__ = ["ApprovalGateOperator", "ApprovalSensor", "idempotency_key"]

#: Added to the rule's timeout for the defer timeout, so the server's expiry decides first.
DEFER_MARGIN = timedelta(minutes=5)
#: The defer timeout when the server gives no expiry (a rule without timeout).
DEFAULT_DEFER = timedelta(days=7)


def idempotency_key(context: Context, action: Mapping[str, Any]) -> str:
    """The gate's key for this task instance and ``action``: the same across retries and
    re-runs that ask about the same action, a new one when the action changed."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    map_index = -1 if map_index is None else map_index
    return f"airflow:{ti.dag_id}:{ti.run_id}:{ti.task_id}:{map_index}:{action_digest(action)}"


class _EarlyOpen:
    """An ``open_gate`` sent when the action is rendered, its answer read in ``execute``: the
    server works on it while the task runner goes on. It holds what it asked, so an answer is
    used only for the very action, key and requester that ``execute`` would send."""

    def __init__(
        self, client: SluicegateClient, asked: tuple[str, dict[str, Any], dict[str, Any]]
    ) -> None:
        # A copy: the action shares its nested values (the context) with the task, and a change
        # made to them in place before execute must not go unseen.
        self.asked = copy.deepcopy(asked)
        self._client = client
        self._read = client.start_open_gate(*self.asked)

    def answer(self) -> RequestOut:
        """The server's answer; raises what :meth:`SluicegateClient.open_gate` raises."""
        try:
            return self._read()
        finally:
            self._client.close()

    def discard(self) -> None:
        self._client.close()


def _renders_to_itself(text: str, env: jinja2.Environment) -> bool:
    """True when Jinja would render ``text`` unchanged in ``env``: no delimiter of the
    environment in it, and nothing its lexer rewrites (a carriage return, a trailing newline it
    drops, newlines it converts). A native environment turns text into Python values: never."""
    if isinstance(env, jinja2.nativetypes.NativeEnvironment):
        return False
    markers = (
        env.variable_start_string,
        env.block_start_string,
        env.comment_start_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
    )
    if any(m and m in text for m in markers) or "\r" in text:
        return False
    if "\n" in text and env.newline_sequence != "\n":
        return False
    return env.keep_trailing_newline or not text.endswith("\n")


def _resuming(context: Context) -> bool | None:
    """True when this run resumes a deferred task (the trigger's event carries the answer),
    False for a first run, None when this is not Airflow's task runner (nothing is known)."""
    from_server = getattr(context.get("ti"), "_ti_context_from_server", None)
    if from_server is None:
        return None
    return bool(getattr(from_server, "next_method", None))


class _Gate:
    """What the gate operator and the sensor share: the client, and reading the answer."""

    sluicegate_conn_id: str
    fail_on_deny: bool

    def _finish(self, answer: RequestOut) -> RequestOut:
        if answer.may_proceed:
            return answer
        if answer.status == "pending":
            raise AirflowFailException(f"Sluicegate request {answer.id} is still pending")
        message = f"Sluicegate: {GateRefused(answer).detail}"  # who denied, and why
        if answer.status == "denied" and not self.fail_on_deny:
            raise AirflowSkipException(message)
        raise AirflowFailException(message)  # no retry: a retry would only reattach to it


class _ActionGate(_Gate):
    """The gate on an action this task describes: open it, defer while it waits, and read the
    answer when the trigger fires. Shared by :class:`ApprovalGateOperator` (a gate task) and
    ``@task.sluicegate`` (a task whose body runs behind its own gate)."""

    #: The template field that holds the action's templated parts.
    TEMPLATED = "sluicegate_action"

    #: ``kind``, ``summary``, ``inputs``, ``outputs``, ``context``, ``destination`` and
    #: ``environment``: one template field for all, since Airflow 3 pays for every template
    #: field of a task on every run (its task runner validates each rendered value through a
    #: new pydantic TypeAdapter: 0.4-0.8 ms a field by bench/bench_airflow_gate.py, so six
    #: fields would cost more than the rest of an allowed gate does). ``inputs``/``outputs``
    #: are None when the task's inlets/outlets name the datasets.
    sluicegate_action: dict[str, Any]
    poll_seconds: float
    # from BaseOperator
    dag_id: str
    task_id: str
    owner: str
    inlets: list[Any]
    outlets: list[Any]
    template_ext: Sequence[str]
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

    def action(self) -> dict[str, Any]:
        """The action this gate asks about, as rendered."""
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
        return action

    def requester(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        dag_run = context.get("dag_run")
        triggered_by = getattr(dag_run, "triggering_user_name", None) if dag_run else None
        return {
            "orchestrator": "airflow",
            "job": f"{ti.dag_id}.{ti.task_id}",
            "run_id": ti.run_id,
            "step": ti.task_id,
            "try_number": int(getattr(ti, "try_number", 0) or 0),
            "map_index": int(getattr(ti, "map_index", -1) if ti.map_index is not None else -1),
            "owner": self.owner,
            "triggered_by": triggered_by,
            "parent": _parent_run(context),
        }

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Airflow's rendering, then the gate's ``open_gate`` is sent (see the module's
        docstring). Only for a task about to execute for the first time: a resumed
        task has its answer in the trigger's event, and rendering for anything else (``airflow
        tasks render``) must not open a gate."""
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        previous = getattr(self, "_sluicegate_early", None)
        if previous is not None:  # rendered twice: only the last rendering's answer counts
            previous.discard()
        self._sluicegate_early: _EarlyOpen | None = None
        # Airflow's task runner locks its copy of the task "before calling execute"
        # (prepare_for_execution); `airflow tasks render` renders an unlocked task.
        if not getattr(self, "_lock_for_execution", False) or _resuming(context) is not False:
            return
        client = SluicegateHook(self.sluicegate_conn_id).get_conn()
        self._sluicegate_early = _EarlyOpen(client, self._asked(context))

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: Any = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Airflow's rendering, except that a string holding no template is kept as it is: what
        Jinja would render it to, without compiling it into a template first, which is most of
        what rendering a gate's mostly static action costs."""
        if (
            type(content) is str
            and jinja_env is not None
            and not getattr(self, "render_template_as_native_obj", None)
            and not (self.template_ext and content.endswith(tuple(self.template_ext)))
            and _renders_to_itself(content, jinja_env)
        ):
            return content
        return super().render_template(content, context, jinja_env, seen_oids)  # type: ignore[misc]

    def _asked(self, context: Context) -> tuple[str, dict[str, Any], dict[str, Any]]:
        action = self.action()
        # Kept for the lineage facet of an older server's policy answer, which names no one.
        self._sluicegate_requester: dict[str, Any] | None = self.requester(context)
        return idempotency_key(context, action), action, self._sluicegate_requester

    def _open_or_defer(self, context: Context) -> RequestOut:
        """The answer if the step may go on now; raises if refused; defers if it waits."""
        asked = self._asked(context)
        early, self._sluicegate_early = getattr(self, "_sluicegate_early", None), None
        try:
            if early is not None and early.asked == asked:
                answer = early.answer()
            else:  # not rendered by the task runner, or the action changed since: ask now
                if early is not None:
                    early.discard()
                with SluicegateHook(self.sluicegate_conn_id).get_conn() as client:
                    answer = client.open_gate(*asked)
        except ClientError as err:
            if err.transient:
                raise  # may pass: Airflow's retries apply, and a retry reattaches
            # Refused as asked (a key that is another gate's, an action the server cannot
            # take): asking again would be refused again.
            raise AirflowFailException(f"Sluicegate: could not open the gate: {err}") from err
        self.log.info("Sluicegate: %s %s", answer.outcome, answer.review_url or "")
        if answer.terminal:
            return self._settled(answer)
        expires = answer.expires_at
        timeout = expires - datetime.now(timezone.utc) + DEFER_MARGIN if expires else DEFAULT_DEFER
        self.defer(  # type: ignore[attr-defined]
            trigger=ApprovalTrigger(
                answer.id,
                self.sluicegate_conn_id,
                self.poll_seconds,
                carry={"request_id": answer.id, "review_url": answer.review_url},
            ),
            method_name="execute_complete",
            timeout=max(timeout, timedelta(seconds=1)),
        )
        raise AssertionError("defer() raises")  # pragma: no cover

    def _resumed(self, event: dict[str, Any]) -> RequestOut:
        """The answer the trigger's event carries (raises if refused)."""
        if event.get("status") == "error":
            raise AirflowFailException(f"Sluicegate: {event.get('error')}")
        return self._settled(RequestOut.model_validate(event["request"]))

    def _settled(self, answer: RequestOut) -> RequestOut:
        """``answer`` once it lets the step go on (its release recorded), else raises."""
        self._sluicegate_answer = answer  # for the OpenLineage facets, asked after execute
        self._finish(answer)
        if answer.releases:  # a request let it pass (a policy's allow has nothing to release)
            with SluicegateHook(self.sluicegate_conn_id).get_conn() as client:
                client.record_release(answer)
        return answer

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
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import InputDataset, OutputDataset

        from sluicegate.lineage.facet import FACET_NAME, facet_of_answer

        try:  # the names the gate asks about
            inputs, outputs = self.datasets()
        except AirflowFailException:  # the gate fails on it; its events name no dataset
            inputs, outputs = [], []
        run_facets: dict[str, Any] = {}
        if answer is not None:
            asked = getattr(self, "_sluicegate_requester", None)
            run_facets[FACET_NAME] = facet_of_answer(answer, requester=asked)
        return OperatorLineage(
            inputs=[InputDataset(namespace=a["namespace"], name=a["name"]) for a in inputs],
            outputs=[OutputDataset(namespace=a["namespace"], name=a["name"]) for a in outputs],
            run_facets=run_facets,
        )


class ApprovalGateOperator(_ActionGate, BaseOperator):
    """Halt until the action is allowed or approved (see the module's docstring).

    :param kind: the action (``export``, ``write``, ``delete``, ``grant``, ``deploy``, ...).
    :param summary: what a reviewer reads first.
    :param inputs, outputs: datasets as ``{"namespace", "name", "classifications"}`` dicts,
        Airflow assets, OpenLineage datasets or URIs; default: the task's inlets and outlets.
        Named as Airflow's OpenLineage provider names them; one that cannot be named (an
        ``AssetAlias``, an ``Asset`` without a URI) fails the task.
    :param context_data: facts for the reviewer (row counts, the query); shown escaped.

    :param fail_on_deny: False to skip downstream instead of failing when denied.

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
        return _result(self._open_or_defer(context))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return _result(self._resumed(event))


def _result(answer: RequestOut) -> dict[str, Any]:
    approvers = [d.reviewer for d in answer.decisions if d.verdict.value == "approve"]
    return {"request_id": answer.id, "status": answer.status, "approvers": approvers}


class ApprovalSensor(_Gate, BaseSensorOperator):
    """Wait for an existing request (``request_id``, templated) to be decided; deferrable."""

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
        with SluicegateHook(self.sluicegate_conn_id).get_conn() as client:
            answer = client.get(self.request_id)
        if not answer.terminal:
            return False
        self._finish(answer)
        return True

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        self.defer(
            trigger=ApprovalTrigger(self.request_id, self.sluicegate_conn_id, self.poll_seconds),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),  # the sensor's own timeout
        )
        raise AssertionError("defer() raises")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") == "error":
            raise AirflowFailException(f"Sluicegate: {event.get('error')}")
        self._finish(RequestOut.model_validate(event["request"]))


def _parent_run(context: Context) -> dict[str, Any] | None:
    """The OpenLineage identity Airflow's provider gives this task run (None without it).

    Only when the provider is active in this process (its listener has loaded the adapter):
    importing it cold takes seconds, and without it no event names this task run anyway.
    """
    if "airflow.providers.openlineage.plugins.adapter" not in sys.modules:
        return None
    try:
        from airflow.providers.openlineage.conf import namespace
        from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    except ImportError:
        return None
    ti = context["ti"]
    try:
        run_id = OpenLineageAdapter.build_task_instance_run_id(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            try_number=ti.try_number,
            logical_date=context.get("logical_date") or context["dag_run"].run_after,
            map_index=ti.map_index if ti.map_index is not None else -1,
        )
    except Exception:  # an API change in the provider: lineage without a parent
        return None
    return {"namespace": namespace(), "name": f"{ti.dag_id}.{ti.task_id}", "run_id": run_id}
