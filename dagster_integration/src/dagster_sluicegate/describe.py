"""What a Dagster step is about to do, as the core's typed ``Action`` and ``Requester``.

Everything comes from what Dagster already holds about the step, so that most assets need
nothing but a tag:

- the action's kind from the tag ``sluicegate/action`` of the asset (or of the op, for a plain
  op), or the gate's ``kind=`` argument;
- its outputs: the assets the step materializes; its inputs: their upstream assets, each named
  the OpenLineage way (:mod:`dagster_sluicegate.assets`, through the core's conversion). A
  partitioned asset is named as the table or file it partitions (the partition goes to the
  reviewer's facts and to the key). ``inputs=``/``outputs=`` given to the gate (dicts, URIs,
  OpenLineage datasets) go through the same conversion;
- the summary, destination and environment from the ``sluicegate/summary``,
  ``sluicegate/destination`` and ``sluicegate/environment`` metadata (metadata, not tags:
  Dagster allows only short plain tag values);
- facts for the reviewer: description, owners, kinds, group, partition, scalar metadata;
- the requester: the run and step, the asset's owners (so no owner can approve it) and the
  user who launched the run where Dagster records one (``dagster/user``). Its ``job`` names
  the step the way dagster-openlineage names the step's OpenLineage job, so a policy's
  ``requester.job`` can single one step out: the asset key (``crm/customers_export``) for a
  step that materializes one asset, ``{job}.{step}`` (``nightly.export_op``,
  ``__ASSET_JOB.orders_and_returns``) for a plain op or a multi-asset step;
- the lineage parent: the OpenLineage run dagster-openlineage (0.2) emits for what the step
  is part of, so a lineage backend shows the gate under it (see :func:`lineage_parent`).

An action or a dataset that cannot be told fails the step without retrying (``Failure``): a
retry would not tell it either, and a guess could be let through by the policy's default.

The idempotency key, ``dagster:{root run id}:{step key}[:{partition}]:{digest}``
(:func:`sluicegate.idempotency.gate_key`), stays the same when a run is re-executed with the
same action (the new run's root is the first run), so a re-execution reattaches to the request
the first run opened; a re-execution whose action changed opens a new request.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import AssetSpec, Failure, OpExecutionContext

from dagster_sluicegate.assets import asset_dataset, given_datasets, upstream_datasets

if TYPE_CHECKING:  # the core's model loads when a gate first asks
    from sluicegate.model import Action, Requester

__all__ = [
    "ACTION_TAG",
    "DEFAULT_LINEAGE_NAMESPACE",
    "StepFacts",
    "lineage_parent",
    "op_context",
]

ACTION_TAG = "sluicegate/action"
SUMMARY_METADATA = "sluicegate/summary"
DESTINATION_METADATA = "sluicegate/destination"
ENVIRONMENT_METADATA = "sluicegate/environment"
#: Run tag Dagster+ (and some launchers) set to the user who launched a run.
USER_RUN_TAG = "dagster/user"
#: dagster-openlineage's namespace when neither ``OPENLINEAGE_NAMESPACE`` nor a repository
#: names one: openlineage-python's ``DEFAULT_NAMESPACE_NAME``, which its adapter falls back to.
DEFAULT_LINEAGE_NAMESPACE = "default"


def op_context(context: Any) -> OpExecutionContext:
    """The op context of an asset's or an op's context (assets get a wrapper around it)."""
    inner = getattr(context, "op_execution_context", context)
    if not isinstance(inner, OpExecutionContext):
        raise TypeError(f"not a Dagster execution context: {type(context).__name__}")
    return inner


@dataclass(frozen=True)
class StepFacts:
    """The step's action, requester and idempotency key (see the module's docstring)."""

    key: str
    action: Action
    requester: Requester
    #: Asset keys the step materializes (user strings); empty for a plain op.
    assets: tuple[str, ...]
    partition: str | None

    @property
    def step(self) -> str:
        """The step key."""
        return self.requester.step

    @classmethod
    def of(
        cls,
        context: Any,
        *,
        asset_namespace: str,
        lineage_namespace: str | None,
        kind: str | None = None,
        summary: str | None = None,
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        destination: str | None = None,
        environment: str | None = None,
        context_data: Mapping[str, Any] | None = None,
    ) -> StepFacts:
        """Read the step of ``context``; the keyword arguments override what Dagster holds.

        :raises Failure: (no retry) no action kind, or an action or dataset that cannot be
            told to the server.
        """
        from sluicegate.exceptions import ActionError
        from sluicegate.idempotency import gate_key
        from sluicegate.model import parse_action, parse_requester

        ctx = op_context(context)
        step = ctx.get_step_execution_context().step.key
        specs = _specs(ctx)
        tags: dict[str, str] = {}
        meta: dict[str, Any] = {}
        for spec in specs:  # the first asset's tags and metadata win
            tags = {**spec.tags, **tags}
            meta = {**{k: _scalar(v) for k, v in spec.metadata.items()}, **meta}
        tags = {**{k: str(v) for k, v in (ctx.op_def.tags or {}).items()}, **tags}  # an op's own
        kind = kind or tags.get(ACTION_TAG)
        if not kind:
            raise Failure(
                description=f"Sluicegate: no action for step {step!r}: tag the asset "
                f"{ACTION_TAG!r} (export, write, grant, ...) or pass kind= to the gate",
                allow_retries=False,
            )
        partition = ctx.partition_key if ctx.has_partition_key else None
        try:
            outs = given_datasets(outputs, "outputs") if outputs is not None else [
                asset_dataset(spec.key, spec, asset_namespace) for spec in specs
            ]  # fmt: skip
            ins = (
                given_datasets(inputs, "inputs")
                if inputs is not None
                else upstream_datasets(ctx, specs, asset_namespace)
            )
            names = ", ".join(o["name"] for o in outs) or step
            action = parse_action(
                {
                    "kind": kind,
                    "summary": summary or meta.get(SUMMARY_METADATA) or f"{kind} {names}",
                    "inputs": ins,
                    "outputs": outs,
                    "destination": destination or meta.get(DESTINATION_METADATA) or None,
                    "environment": environment or meta.get(ENVIRONMENT_METADATA) or None,
                    "context": _reviewer_facts(ctx, specs, partition, context_data),
                }
            )
            requester = parse_requester(_requester(ctx, specs, step, lineage_namespace))
        except ActionError as err:  # DatasetError too; a retry would be refused alike
            raise Failure(description=f"Sluicegate: {err}", allow_retries=False) from None
        run = ctx.run
        root = run.root_run_id or run.run_id
        where = ("dagster", root, step, *([partition] if partition is not None else []))
        return cls(
            key=gate_key(*where, action=action),
            action=action,
            requester=requester,
            assets=tuple(spec.key.to_user_string() for spec in specs),
            partition=partition,
        )


def _requester(
    ctx: OpExecutionContext, specs: Sequence[AssetSpec], step: str, namespace: str | None
) -> dict[str, Any]:
    owners = list(dict.fromkeys(o for spec in specs for o in spec.owners))
    return {
        "orchestrator": "dagster",
        # One asset: its key, as dagster-openlineage names the asset's job; anything else:
        # the step in its job (the job alone is __ASSET_JOB for every asset step).
        "job": specs[0].key.to_user_string() if len(specs) == 1 else f"{ctx.job_name}.{step}",
        "run_id": ctx.run.run_id,
        "step": step,
        "try_number": ctx.retry_number,
        "owner": ",".join(owners) or None,
        "triggered_by": ctx.run.tags.get(USER_RUN_TAG),
        "parent": lineage_parent(ctx, specs, namespace),
    }


def lineage_parent(
    context: Any, specs: Sequence[AssetSpec], namespace: str | None = None
) -> dict[str, str]:
    """The OpenLineage run dagster-openlineage emits for what this step is part of, as the
    gate's ``parent``: ``{namespace, name, run_id}``.

    Read from dagster-openlineage 0.2.1 (dagster-io/community-integrations,
    ``libraries/dagster-openlineage``): ``adapter.py`` names an asset's job by its key
    (``AssetKey.to_user_string()``) and a run's job by the Dagster job's name, both with the
    Dagster run id as their ``runId``; a step's own job (``{job}.{step}``) gets a fresh
    random run id (``utils.make_step_run_id``) that no other process can know, so the parent
    is never the step itself. Hence:

    - a step that materializes one asset: the asset's run (``crm/customers_export``), emitted
      by the event log storage wrapper and by ``openlineage_sensor(include_asset_events=True)``;
    - a plain op, or a multi-asset step: the Dagster run (job name), emitted by the sensor.

    ``namespace`` None means dagster-openlineage's own: ``OPENLINEAGE_NAMESPACE``, else
    ``default``; for a run's job, the sensor uses the run's repository name first when the run
    has one (``utils.get_repository_name``), and so does this.
    """
    ctx = op_context(context)
    run = ctx.run
    run_id = str(uuid.UUID(run.run_id))
    default = os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_LINEAGE_NAMESPACE
    if len(specs) == 1:
        return {
            "namespace": namespace or default,
            "name": specs[0].key.to_user_string(),
            "run_id": run_id,
        }
    return {
        "namespace": namespace or _repository_name(run) or default,
        "name": ctx.job_name,
        "run_id": run_id,
    }


def _repository_name(run: Any) -> str | None:
    """The repository a run was launched from (none for ``materialize()``), looked up as
    dagster-openlineage's ``utils.get_repository_name`` does."""
    origin = getattr(run, "remote_job_origin", None)
    repository = getattr(origin, "repository_origin", None)
    name = getattr(repository, "repository_name", None)
    return name if isinstance(name, str) and name else None


def _specs(ctx: OpExecutionContext) -> list[AssetSpec]:
    """The specs of the assets this step materializes (none for a plain op)."""
    if not ctx.has_assets_def:
        return []
    assets_def = ctx.assets_def
    return [assets_def.get_asset_spec(k) for k in sorted(ctx.selected_asset_keys)]


def _scalar(value: Any) -> Any:
    """A metadata value a reviewer can read, or None for what does not belong on the page."""
    value = getattr(value, "value", value)  # MetadataValue wrappers hold the plain value
    if isinstance(value, (str, int, float, bool)):
        return value
    return None


def _reviewer_facts(
    ctx: OpExecutionContext,
    specs: Sequence[AssetSpec],
    partition: str | None,
    given: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What the reviewer sees of the step: the first asset's facts (every key of a
    multi-asset step), or the op's name; the partition; then ``context_data``."""
    if not specs:
        facts: dict[str, Any] = {"op": ctx.op.name}
    else:
        spec = specs[0]
        facts = {"asset": spec.key.to_user_string()}
        if len(specs) > 1:
            facts = {"assets": [s.key.to_user_string() for s in specs]}
        if spec.description:
            facts["description"] = spec.description
        if spec.owners:
            facts["owners"] = list(spec.owners)
        if spec.kinds:
            facts["kinds"] = sorted(spec.kinds)
        if spec.group_name:
            facts["group"] = spec.group_name
        for name, value in spec.metadata.items():
            plain = _scalar(value)
            if plain is not None and not name.startswith("sluicegate/"):
                facts[f"metadata.{name}"] = plain
    if partition is not None:
        facts["partition"] = partition
    facts.update(given or {})
    return facts
