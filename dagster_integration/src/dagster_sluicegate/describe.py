"""What a Dagster step is about to do, told the way the Sluicegate server expects it.

Everything comes from what Dagster already holds about the step, so that most assets need
nothing but a tag:

- the action's kind from the tag ``sluicegate/action`` of the asset (or of the op, for a plain
  op), or the gate's ``kind=`` argument;
- its outputs: the assets the step materializes; its inputs: their upstream assets. A dataset
  is named by the ``dagster/table_name`` metadata when the asset has it (``crm.public.customers``,
  so a policy written for the warehouse's tables matches) in the namespace of the
  ``sluicegate/namespace`` metadata (``postgres://prod:5432``); otherwise by the asset key
  (``crm/customers``) in the resource's ``asset_namespace``. ``sluicegate/classifications``
  metadata (``["pii"]``) adds classifications; the server adds its own, and lineage's;
- the summary, destination and environment from the ``sluicegate/summary``,
  ``sluicegate/destination`` and ``sluicegate/environment`` metadata (metadata, not tags:
  Dagster allows only short plain tag values);
- facts for the reviewer: description, owners, kinds, group, partition, scalar metadata;
- the requester: the run and step, the asset's owners (so no owner can approve it) and the
  user who launched the run where Dagster records one (``dagster/user``).

The idempotency key, ``dagster:{root run id}:{step key}[:{partition}]``, stays the same when
a run is re-executed (the new run's root is the first run), so a re-execution reattaches to
the request the first run opened.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, AssetSpec, Failure, OpExecutionContext

__all__ = [
    "ACTION_TAG",
    "CLASSIFICATIONS_METADATA",
    "NAMESPACE_METADATA",
    "StepFacts",
    "op_context",
]

ACTION_TAG = "sluicegate/action"
SUMMARY_METADATA = "sluicegate/summary"
DESTINATION_METADATA = "sluicegate/destination"
ENVIRONMENT_METADATA = "sluicegate/environment"
CLASSIFICATIONS_METADATA = "sluicegate/classifications"
NAMESPACE_METADATA = "sluicegate/namespace"
TABLE_NAME_METADATA = "dagster/table_name"
#: Run tag Dagster+ (and some launchers) set to the user who launched a run.
USER_RUN_TAG = "dagster/user"


def op_context(context: Any) -> OpExecutionContext:
    """The op context of an asset's or an op's context (assets get a wrapper around it)."""
    inner = getattr(context, "op_execution_context", context)
    if not isinstance(inner, OpExecutionContext):
        raise TypeError(f"not a Dagster execution context: {type(context).__name__}")
    return inner


def _scalar(value: Any) -> Any:
    """A metadata value a reviewer can read, or None for what does not belong on the page."""
    value = getattr(value, "value", value)  # MetadataValue wrappers hold the plain value
    if isinstance(value, (str, int, float, bool)):
        return value
    return None


@dataclass(frozen=True)
class StepFacts:
    """The step's action, requester and idempotency key (see the module's docstring)."""

    key: str
    action: dict[str, Any]
    requester: dict[str, Any]
    #: Asset keys the step materializes (user strings); empty for a plain op.
    assets: tuple[str, ...]
    partition: str | None

    @classmethod
    def of(
        cls,
        context: Any,
        *,
        asset_namespace: str,
        lineage_namespace: str,
        kind: str | None = None,
        summary: str | None = None,
        inputs: Sequence[Mapping[str, Any]] | None = None,
        outputs: Sequence[Mapping[str, Any]] | None = None,
        destination: str | None = None,
        environment: str | None = None,
        context_data: Mapping[str, Any] | None = None,
    ) -> StepFacts:
        ctx = op_context(context)
        run = ctx.run
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
        outs = list(outputs) if outputs is not None else [
            _dataset(spec.key, spec, asset_namespace) for spec in specs
        ]  # fmt: skip
        ins = list(inputs) if inputs is not None else _upstream(ctx, specs, asset_namespace)
        names = ", ".join(o["name"] for o in outs) or step
        facts: dict[str, Any] = _reviewer_facts(specs[0]) if specs else {"op": ctx.op.name}
        if len(specs) > 1:  # a multi-asset step: every key, the first asset's other facts
            del facts["asset"]
            facts["assets"] = [spec.key.to_user_string() for spec in specs]
        if partition is not None:
            facts["partition"] = partition
        facts.update(context_data or {})
        action: dict[str, Any] = {
            "kind": kind,
            "summary": summary or meta.get(SUMMARY_METADATA) or f"{kind} {names}",
            "inputs": ins,
            "outputs": outs,
            "context": facts,
        }
        destination = destination or meta.get(DESTINATION_METADATA)
        environment = environment or meta.get(ENVIRONMENT_METADATA)
        if destination:
            action["destination"] = destination
        if environment:
            action["environment"] = environment
        owners = list(dict.fromkeys(o for spec in specs for o in spec.owners))
        root = run.root_run_id or run.run_id
        requester = {
            "orchestrator": "dagster",
            "job": ctx.job_name,
            "run_id": run.run_id,
            "step": step,
            "try_number": ctx.retry_number,
            "owner": ",".join(owners) or None,
            "triggered_by": run.tags.get(USER_RUN_TAG),
            "parent": {
                "namespace": lineage_namespace,
                "name": f"{ctx.job_name}.{step}",
                "run_id": str(uuid.UUID(run.run_id)),
            },
        }
        key = f"dagster:{root}:{step}" + (f":{partition}" if partition is not None else "")
        return cls(
            key=key,
            action=action,
            requester=requester,
            assets=tuple(spec.key.to_user_string() for spec in specs),
            partition=partition,
        )


def _specs(ctx: OpExecutionContext) -> list[AssetSpec]:
    """The specs of the assets this step materializes (none for a plain op)."""
    if not ctx.has_assets_def:
        return []
    assets_def = ctx.assets_def
    return [assets_def.get_asset_spec(k) for k in sorted(ctx.selected_asset_keys)]


def _dataset(key: AssetKey, spec: AssetSpec | None, namespace: str) -> dict[str, Any]:
    metadata = spec.metadata if spec is not None else {}
    name = _scalar(metadata.get(TABLE_NAME_METADATA)) or key.to_user_string()
    out: dict[str, Any] = {
        "namespace": str(_scalar(metadata.get(NAMESPACE_METADATA)) or namespace),
        "name": str(name),
    }
    given = getattr(metadata.get(CLASSIFICATIONS_METADATA), "value", None) or metadata.get(
        CLASSIFICATIONS_METADATA
    )
    if isinstance(given, str):
        given = given.split(",")
    labels = [str(c).strip() for c in (given or []) if str(c).strip()]
    if labels:
        out["classifications"] = labels
    return out


def _upstream(
    ctx: OpExecutionContext, specs: Sequence[AssetSpec], namespace: str
) -> list[dict[str, Any]]:
    """The upstream assets of the step's assets, named as the upstream assets name themselves
    when this code location defines them (their table name and namespace metadata)."""
    seen: dict[AssetKey, None] = {}
    for spec in specs:
        for dep in spec.deps:
            seen.setdefault(dep.asset_key)
    own = {spec.key for spec in specs}
    out = []
    for key in seen:
        if key in own:
            continue
        out.append(_dataset(key, _known_spec(ctx, key), namespace))
    return out


def _known_spec(ctx: OpExecutionContext, key: AssetKey) -> AssetSpec | None:
    """The spec of an upstream asset if the job holds its definition, else None."""
    try:
        graph = ctx.get_step_execution_context().job_def.asset_layer.asset_graph
        if graph.has(key):
            return graph.get(key).to_asset_spec()
    except Exception:  # an upstream from another code location: named by its key
        return None
    return None


def _reviewer_facts(spec: AssetSpec) -> dict[str, Any]:
    facts: dict[str, Any] = {"asset": spec.key.to_user_string()}
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
    return facts
