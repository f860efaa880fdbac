"""``approval_sensor``: launch a gated asset or job once its request is approved.

A step gated with ``wait="sensor"`` ends its run at the gate and leaves run tags behind
(``sluicegate/gate: waiting``, and ``sluicegate/waiting.<step>`` naming the request, the
assets and the partition). On each tick the sensor reads those runs from the Dagster instance
and each request's outcome through the core gate (``Gate.wait`` without waiting or settling:
the gate of the launched run records the release). For each outcome that lets its step go on,
it requests a run of the gated assets (or of the job) with ``run_key`` = the request id, so
Dagster launches exactly one run per approval, tagged with the request and its approvers
(``sluicegate/request_id``, ``sluicegate/approvers``, and ``sluicegate/request.<step>``, which
the gate in the new run takes up instead of opening a new request). Refused requests (denied,
expired, cancelled) launch nothing. A request is marked settled on the waiting run once its
outcome is final: launched (seen as a run carrying it), or refused.

Nothing runs while people decide: the latency from the decision to the step running again is
bounded by the sensor's interval (``minimum_interval_seconds``) plus the run's start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from dagster_sluicegate.gate import (
    APPROVERS_TAG,
    GATE_RUN_TAG,
    REQUEST_ID_TAG,
    WAITING_TAG_PREFIX,
    step_tag,
)
from dagster_sluicegate.resource import SluicegateResource

__all__ = ["approval_sensor"]


def approval_sensor(
    target: Sequence[AssetsDefinition] | AssetsDefinition | JobDefinition,
    *,
    name: str = "sluicegate_approvals",
    minimum_interval_seconds: int = 10,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    lookback_runs: int = 200,
) -> Any:
    """A sensor that launches ``target`` (the gated assets, or a job) once approved.

    :param target: the assets gated with ``wait="sensor"`` (it launches only those the waiting
        step materializes), or the job whose gate ops wait that way (it launches the job).
    :param minimum_interval_seconds: how often it asks; the bound on the resume latency.
    :param lookback_runs: how many of the newest waiting runs each tick looks at.
    """
    job = target if isinstance(target, JobDefinition) else None
    assets = [] if job is not None else _assets(target)  # type: ignore[arg-type]
    keys = {k for a in assets for k in a.keys}

    def in_scope(run: Any, waiting: dict[str, Any]) -> bool:
        if job is not None:
            return bool(run.job_name == job.name)
        wanted = {AssetKey.from_user_string(a) for a in waiting.get("assets", [])}
        return bool(wanted) and wanted <= keys

    @sensor(
        name=name,
        target=job if job is not None else assets,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Launches Sluicegate-gated steps once their requests are approved",
    )
    def approvals(
        context: SensorEvaluationContext, sluicegate: SluicegateResource
    ) -> Iterator[RunRequest | SkipReason]:
        from sluicegate.exceptions import ClientError
        from sluicegate.gate import Gate, OutcomeKind

        instance = context.instance
        runs = instance.get_runs(RunsFilter(tags={GATE_RUN_TAG: "waiting"}), limit=lookback_runs)
        launched = 0
        if runs:  # most ticks find no waiting run: no client, no connection
            gate = Gate(sluicegate.shared_client())
            for run in runs:
                waiting = {
                    entry["step"]: entry
                    for k, v in run.tags.items()
                    if k.startswith(WAITING_TAG_PREFIX) and (entry := json.loads(v))
                }
                # ``sluicegate/settled.<step>`` = launched | denied | expired | cancelled
                settled = {s for s in waiting if step_tag("settled", s) in run.tags}
                for step, entry in waiting.items():
                    if step in settled or not in_scope(run, entry):
                        continue
                    rid = entry["request_id"]
                    try:  # its outcome now: no wait, and no release (the launched run's gate)
                        outcome = gate.wait(rid, timeout=0, settle=False)
                    except ClientError as err:  # fail closed: launch nothing, ask next tick
                        context.log.warning(f"Sluicegate: cannot read request {rid}: {err}")
                        continue
                    if outcome.kind is OutcomeKind.PENDING:
                        continue
                    ended: str
                    if not outcome.proceed:
                        context.log.info(f"Sluicegate: {outcome.message}: not launched")
                        ended = outcome.kind.value
                    elif instance.get_runs(RunsFilter(tags={REQUEST_ID_TAG: rid}), limit=1):
                        ended = "launched"
                    else:
                        launched += 1
                        yield RunRequest(
                            run_key=rid,
                            asset_selection=(
                                None
                                if job is not None
                                else [AssetKey.from_user_string(a) for a in entry["assets"]]
                            ),
                            partition_key=entry.get("partition"),
                            tags={
                                REQUEST_ID_TAG: rid,
                                step_tag("request", step): rid,
                                APPROVERS_TAG: ",".join(outcome.approvers),
                            },
                        )
                        continue  # settled once a run carrying it is seen
                    settled.add(step)
                    tags: dict[str, str] = {step_tag("settled", step): ended}
                    if set(waiting) <= settled:
                        tags[GATE_RUN_TAG] = "settled"
                    instance.add_run_tags(run.run_id, tags)
        if not launched:
            yield SkipReason(f"no approved request to launch among {len(runs)} waiting runs")

    return approvals


def _assets(target: Sequence[AssetsDefinition] | AssetsDefinition) -> list[AssetsDefinition]:
    items = [target] if isinstance(target, AssetsDefinition) else list(target)
    bad = [type(a).__name__ for a in items if not isinstance(a, AssetsDefinition)]
    if bad or not items:
        raise TypeError(
            "approval_sensor's target is the gated assets (AssetsDefinition) or a JobDefinition"
            + (f", not {', '.join(bad)}" if bad else "")
        )
    return items
