"""The two ways to put a gate in Dagster code.

``@approval_required`` goes under ``@asset`` (or ``@op``, ``@multi_asset``): the body runs
only once the gate lets it. The action comes from the asset's tags, keys and metadata::

    @asset(deps=[customers], tags={"sluicegate/action": "export"}, owners=["carol@example.com"])
    @approval_required
    def customers_export(context: AssetExecutionContext) -> None:
        ...

The decorated function asks for the ``sluicegate`` resource (a :class:`SluicegateResource`)
by itself; if it names that parameter, it gets the resource too. With ``wait="sensor"`` the
asset must be declared ``output_required=False``: a run that ends at the gate materializes
nothing, and the :func:`~dagster_sluicegate.sensor.approval_sensor` launches the asset again
once the request is approved.

:func:`approval_gate_op` makes a gate op for op jobs: ``export(after=gate(extract()))``;
downstream ops wait on its ``Nothing`` output. (Dagster's own hooks run after an op has
finished, so they can tell of a step but cannot hold it back: a gate is an op, or a body.)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from dagster import Failure, In, Nothing, OpExecutionContext, Out, Output, op

from dagster_sluicegate.describe import op_context
from dagster_sluicegate.gate import Wait, approval_metadata, request_approval
from dagster_sluicegate.resource import SluicegateResource

__all__ = ["approval_gate_op", "approval_required"]

F = TypeVar("F", bound=Callable[..., Any])
RESOURCE_KEY = "sluicegate"
_CONTEXT_NAMES = {"context", "_context", "context_", "_"}


@overload
def approval_required(fn: F) -> F: ...
@overload
def approval_required(
    fn: None = None,
    *,
    kind: str | None = None,
    summary: str | None = None,
    inputs: Sequence[Mapping[str, Any]] | None = None,
    outputs: Sequence[Mapping[str, Any]] | None = None,
    destination: str | None = None,
    environment: str | None = None,
    context_data: Mapping[str, Any] | None = None,
    wait: Wait = "step",
) -> Callable[[F], F]: ...
def approval_required(
    fn: F | None = None,
    *,
    kind: str | None = None,
    summary: str | None = None,
    inputs: Sequence[Mapping[str, Any]] | None = None,
    outputs: Sequence[Mapping[str, Any]] | None = None,
    destination: str | None = None,
    environment: str | None = None,
    context_data: Mapping[str, Any] | None = None,
    wait: Wait = "step",
) -> Any:
    """Run the body only once Sluicegate lets it (see the module's docstring).

    :param kind: the action (``export``, ``write``, ...); default: the ``sluicegate/action``
        tag. The other action arguments override what is read from the asset.
    :param wait: ``"step"`` (long-poll in the step, bounded by the resource's
        ``max_wait_seconds``) or ``"sensor"`` (end the run at the gate; the sensor resumes).
    """
    if wait not in ("step", "sensor"):
        raise ValueError(f"wait must be 'step' or 'sensor', not {wait!r}")
    overrides = {
        "kind": kind,
        "summary": summary,
        "inputs": inputs,
        "outputs": outputs,
        "destination": destination,
        "environment": environment,
        "context_data": context_data,
    }

    def decorate(body: F) -> F:
        return _gated(body, wait, overrides)  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


def _gated(body: Callable[..., Any], wait: Wait, overrides: dict[str, Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(body) or inspect.isasyncgenfunction(body):
        raise TypeError(f"@approval_required does not support async functions ({body.__name__})")
    try:  # resolved here: Dagster would look string annotations up in this module
        sig = inspect.signature(body, eval_str=True)
    except NameError:  # a name only known under TYPE_CHECKING: Dagster reports it as usual
        sig = inspect.signature(body)
    params = list(sig.parameters.values())
    takes_context = bool(params) and params[0].name in _CONTEXT_NAMES
    takes_resource = RESOURCE_KEY in sig.parameters
    if not takes_context:
        params.insert(0, inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    if not takes_resource:
        params.append(
            inspect.Parameter(
                RESOURCE_KEY, inspect.Parameter.KEYWORD_ONLY, annotation=SluicegateResource
            )
        )

    @functools.wraps(body)
    def wrapper(context: Any, **kwargs: Any) -> Iterator[Any]:
        resource = kwargs[RESOURCE_KEY] if takes_resource else kwargs.pop(RESOURCE_KEY)
        ctx = op_context(context)
        if wait == "sensor":
            _require_optional_outputs(ctx)
        answer = request_approval(context, resource, wait=wait, **overrides)
        if answer is None:
            return  # ended at the gate: no output, nothing downstream; the sensor resumes
        for name in ctx.selected_output_names:
            ctx.add_output_metadata(approval_metadata(answer), output_name=name)
        result = body(context, **kwargs) if takes_context else body(**kwargs)
        yield from _events(ctx, result)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def _require_optional_outputs(ctx: OpExecutionContext) -> None:
    required = [o.name for o in ctx.op_def.output_defs if o.is_required]
    if required:
        raise Failure(
            description=f"Sluicegate: {ctx.op_def.name}: wait='sensor' ends a run at the gate "
            "without output, so declare the asset with output_required=False (or its outputs "
            f"is_required=False; required now: {required}); nothing was opened, nothing ran",
            allow_retries=False,
        )


def _events(ctx: OpExecutionContext, result: Any) -> Iterator[Any]:
    """The body's result as the events of a generator step (what Dagster does for a return)."""
    if inspect.isgenerator(result):
        yield from result
        return
    outs = [o for o in ctx.op_def.output_defs if o.name in ctx.selected_output_names]
    if _is_event(result):
        yield result
    elif len(outs) > 1 and isinstance(result, tuple):
        for out, value in zip(outs, result, strict=True):
            yield value if _is_event(value) else Output(value, output_name=out.name)
    elif len(outs) == 1:
        yield Output(result, output_name=outs[0].name)
    elif result is not None:
        raise TypeError(f"{ctx.op_def.name} returned a value but has no output to hold it")


def _is_event(value: Any) -> bool:
    from dagster import AssetCheckResult, AssetMaterialization, MaterializeResult, ObserveResult

    return isinstance(
        value, (Output, MaterializeResult, ObserveResult, AssetMaterialization, AssetCheckResult)
    )


def approval_gate_op(
    name: str,
    *,
    kind: str,
    summary: str | None = None,
    inputs: Sequence[Mapping[str, Any]] | None = None,
    outputs: Sequence[Mapping[str, Any]] | None = None,
    destination: str | None = None,
    environment: str | None = None,
    context_data: Mapping[str, Any] | None = None,
    wait: Wait = "step",
) -> Any:
    """A gate op for op jobs: ``export(after=gate(extract()))`` (see the module's docstring).

    Its ``after`` input and its output are ``Nothing``: it orders steps, it moves no data.
    Approved, it outputs (with the approval as output metadata) and downstream runs; with
    ``wait="sensor"`` and a request still open it outputs nothing, so downstream is skipped
    and the sensor launches the job again once the request is approved.
    """
    action = {
        "kind": kind,
        "summary": summary,
        "inputs": list(inputs or []),
        "outputs": list(outputs or []),
        "destination": destination,
        "environment": environment,
        "context_data": context_data,
    }

    @op(
        name=name,
        ins={"after": In(Nothing)},
        out=Out(Nothing, is_required=False),
        description=f"Sluicegate approval gate ({kind})",
        tags={"sluicegate/action": kind},
    )
    def gate(context, sluicegate: SluicegateResource) -> Iterator[Any]:  # type: ignore[no-untyped-def]
        answer = request_approval(context, sluicegate, wait=wait, **action)
        if answer is not None:
            yield Output(None, metadata=approval_metadata(answer))

    return gate
