"""``@task.sluicegate``: a TaskFlow task whose body runs behind its own approval gate.

::

    @task.sluicegate(kind="export", inputs=[CUSTOMERS], outputs=[PARTNER_FILE])
    def export(rows: int) -> str:
        ...  # runs only once the policy allows it or the stewards approved it

One task instead of a gate task and the task it guards: an action the policy allows costs the
step one round trip and nothing else (no extra task instance, which costs Airflow far more
than the check). When the action needs approval the task defers like
:class:`~sluicegate_airflow.operators.ApprovalGateOperator` (no worker held) and, once
approved, runs the body in the resumed task with the arguments it was given. Denied, the body
never runs and the task fails without retrying (``fail_on_deny=False``: skipped). It takes the
same gate arguments as ``ApprovalGateOperator``, and returns what the body returns.

Built from Airflow's public classes only: the SDK's ``DecoratedOperator`` (the TaskFlow
plumbing: arguments, XCom output) and the standard provider's ``PythonOperator`` (calling the
body), as the standard provider builds ``@task`` itself, with the gate mixed in before them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Context
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from sluicegate_airflow.hooks.sluicegate import SluicegateHook
from sluicegate_airflow.operators.approval import _ActionGate

__all__ = ["sluicegate_task"]


class _SluicegateDecoratedOperator(_ActionGate, DecoratedOperator, PythonOperator):
    """The operator behind ``@task.sluicegate``: the gate, then the decorated function."""

    template_fields: Sequence[str] = (*PythonOperator.template_fields, _ActionGate.TEMPLATED)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **PythonOperator.template_fields_renderers,
        _ActionGate.TEMPLATED: "json",
    }
    custom_operator_name = "@task.sluicegate"
    ui_color = "#f5d76e"

    # The gate's arguments are spelled out (as ApprovalGateOperator's are), not taken from
    # **kwargs: Airflow fills an operator's arguments from default_args only for the names in
    # its __init__ signature, so `default_args={"sluicegate_conn_id": ...}` applies here too.
    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
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
        # DecoratedOperator keeps the callable and its arguments for itself; PythonOperator,
        # next in the method order, needs them too: `kwargs_to_upstream` hands them on.
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            kwargs_to_upstream={
                "python_callable": python_callable,
                "op_args": op_args,
                "op_kwargs": op_kwargs,
            },
            **kwargs,
        )
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

    def execute(self, context: Context) -> Any:
        """The gate, then the body: the body runs only if the gate returns (no defer, no
        refusal)."""
        self._open_or_defer(context)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resumed by the trigger: the body runs once the decision in its event lets it."""
        self._resumed(event)  # raises unless the request let the step go on
        return super().execute(context)


def sluicegate_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> Any:
    """``@task.sluicegate(kind=..., ...)``: a TaskFlow task whose body runs behind its own
    approval gate (see the module's docstring). Takes ``ApprovalGateOperator``'s gate
    arguments and any ``@task`` argument."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_SluicegateDecoratedOperator,
        **kwargs,
    )
