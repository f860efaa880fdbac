"""``GateDecision``: the run input a paused flow run is resumed with.

The Sluicegate server resumes the run with ``{"request_id", "status"}`` once the request ends
(core: ``sluicegate.notify.channels.prefect.run_input``). Neither field has a default, so Prefect
refuses a bare resume from its UI or API (the input fails the schema) and the run stays
paused. Even a complete input is only a wake-up call: the gate asks the Sluicegate server for
the decision before it lets the flow go on, so a hand-made input approves nothing.
"""

from __future__ import annotations

from prefect.input import RunInput

__all__ = ["GateDecision"]


class GateDecision(RunInput):
    """What ended the request (as the resumer says; the gate checks it with the server)."""

    request_id: str
    status: str
