"""What a Dagster step is about to do, told the way the Sluicegate server expects it.

Everything comes from what Dagster already holds about the step, so that most assets need
nothing but a tag:

- the action's kind from the tag ``sluicegate/action`` of the asset (or of the op, for a plain
  op), or the gate's ``kind=`` argument;
- its outputs: the assets the step materializes; its inputs: their upstream assets. Each is
  named the OpenLineage way (:mod:`sluicegate.datasets`), so that a policy written for the
  warehouse's tables matches, from the first of these the asset has:

  1. ``dagster/table_name`` (or ``dagster/relation_identifier``) metadata in the namespace of
     the ``sluicegate/namespace`` metadata: ``crm.public.customers`` in ``postgres://prod:5432``;
  2. ``dagster/uri`` metadata: ``postgres://prod:5432/crm/public/customers``,
     ``s3://bucket/key``;
  3. ``dagster/table_name`` in the resource's ``asset_namespace``;
  4. the asset key in the namespace of the ``sluicegate/namespace`` metadata: the key
     ``crm/public/customers`` in ``postgres://prod:5432`` is ``crm.public.customers``;
  5. the asset key as is (``crm/customers``) in the resource's ``asset_namespace``.

  A ``dagster/uri`` or a table name that cannot be named fails the step without retrying
  (``Failure``): a dataset named otherwise would be one that no policy rule classifies. A
  partitioned asset is named as the table or file it partitions (the partition goes to the
  reviewer's facts and to the key). ``sluicegate/classifications`` metadata (``["pii"]``)
  adds classifications; the server adds its own, and lineage's. ``inputs=``/``outputs=``
  given to the gate (dicts, URIs, OpenLineage datasets) go through the same conversion;
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

The idempotency key, ``dagster:{root run id}:{step key}[:{partition}]:{digest}``, the digest
that of the whole action as sent (:func:`sluicegate.idempotency.action_digest`), stays the same
when a run is re-executed with the same action (the new run's root is the first run), so a
re-execution reattaches to the request the first run opened; a re-execution whose action
changed opens a new request and is asked about again.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, AssetSpec, Failure, OpExecutionContext

from sluicegate.datasets import to_asset, to_assets
from sluicegate.exceptions import DatasetError
from sluicegate.idempotency import action_digest

__all__ = [
    "ACTION_TAG",
    "CLASSIFICATIONS_METADATA",
    "DEFAULT_LINEAGE_NAMESPACE",
    "NAMESPACE_METADATA",
    "StepFacts",
    "lineage_parent",
    "op_context",
]

ACTION_TAG = "sluicegate/action"
SUMMARY_METADATA = "sluicegate/summary"
DESTINATION_METADATA = "sluicegate/destination"
ENVIRONMENT_METADATA = "sluicegate/environment"
CLASSIFICATIONS_METADATA = "sluicegate/classifications"
NAMESPACE_METADATA = "sluicegate/namespace"
TABLE_NAME_METADATA = "dagster/table_name"
#: Dagster's other key for a table name (``TableMetadataSet.relation_identifier``).
RELATION_METADATA = "dagster/relation_identifier"
#: Dagster's ``UriMetadataSet``: where the asset lives (``s3://bucket/key``).
URI_METADATA = "dagster/uri"
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
        lineage_namespace: str | None,
        kind: str | None = None,
        summary: str | None = None,
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
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
        outs = _given(outputs, "outputs") if outputs is not None else [
            _dataset(spec.key, spec, asset_namespace) for spec in specs
        ]  # fmt: skip
        ins = (
            _given(inputs, "inputs")
            if inputs is not None
            else _upstream(ctx, specs, asset_namespace)
        )
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
            # One asset: its key, as dagster-openlineage names the asset's job; anything else:
            # the step in its job (the job alone is __ASSET_JOB for every asset step).
            "job": specs[0].key.to_user_string() if len(specs) == 1 else f"{ctx.job_name}.{step}",
            "run_id": run.run_id,
            "step": step,
            "try_number": ctx.retry_number,
            "owner": ",".join(owners) or None,
            "triggered_by": run.tags.get(USER_RUN_TAG),
            "parent": lineage_parent(ctx, specs, lineage_namespace),
        }
        key = f"dagster:{root}:{step}" + (f":{partition}" if partition is not None else "")
        key += f":{action_digest(action)}"
        return cls(
            key=key,
            action=action,
            requester=requester,
            assets=tuple(spec.key.to_user_string() for spec in specs),
            partition=partition,
        )


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


def _unnamed(err: DatasetError) -> Failure:
    # Not retryable: a retry would not name it either.
    return Failure(description=f"Sluicegate: {err}", allow_retries=False)


def _given(items: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """The gate's own ``inputs``/``outputs`` as the API's assets."""
    try:
        return to_assets(items, where=where)
    except DatasetError as err:
        raise _unnamed(err) from None


def _dataset(key: AssetKey, spec: AssetSpec | None, namespace: str) -> dict[str, Any]:
    """The asset ``key`` as a dataset, named from its spec's metadata (see the module's
    docstring); raises ``Failure`` if that metadata does not name one."""
    metadata = spec.metadata if spec is not None else {}
    table = _plain(metadata, TABLE_NAME_METADATA, RELATION_METADATA)
    uri = _plain(metadata, URI_METADATA)
    own = _plain(metadata, NAMESPACE_METADATA)
    asset = f"asset {key.to_user_string()!r}"
    try:
        # a dagster/uri is checked even where a table name wins: a bad one fails the step
        by_uri = None if uri is None else to_asset(uri, where=f"{asset} {URI_METADATA}")
        if table is not None and own is not None:
            named = to_asset({"namespace": own, "name": table}, where=asset)
        elif by_uri is not None:
            named = by_uri
        elif table is not None:
            named = to_asset({"namespace": namespace, "name": table}, where=asset)
        else:
            name = "/".join(key.path)
            named = to_asset({"namespace": own or namespace, "name": name}, where=asset)
    except DatasetError as err:
        raise _unnamed(err) from None
    out: dict[str, Any] = {"namespace": named["namespace"], "name": named["name"]}
    given = getattr(metadata.get(CLASSIFICATIONS_METADATA), "value", None) or metadata.get(
        CLASSIFICATIONS_METADATA
    )
    if isinstance(given, str):
        given = given.split(",")
    labels = [str(c).strip() for c in (given or []) if str(c).strip()]
    if labels:
        out["classifications"] = labels
    return out


def _plain(metadata: Mapping[str, Any], *keys: str) -> Any:
    """The plain value of the first of ``keys`` in ``metadata`` (None when none is there): a
    value that is there but empty or not text is returned as is, so that naming refuses it."""
    for k in keys:
        if k in metadata:
            value = getattr(metadata[k], "value", metadata[k])
            return str(value) if isinstance(value, (int, float)) else value
    return None


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
