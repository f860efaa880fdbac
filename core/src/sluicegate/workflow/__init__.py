"""The approval workflow: the one path every channel takes to open, decide, cancel and release.

The HTTP API, the review pages, Slack's buttons and the CLI demo are thin layers over
:class:`Workflow`: they identify the caller, call one method, and map its answer or error onto
their own medium. Every rule that matters is here (or in the policy and the store it calls),
in the order a decision goes through them:

1. **identify**: the channel says who is deciding; an identity that can never decide (a token
   of another scope, a Slack user the policy lacks) is passed as ``refused`` and recorded;
2. **eligibility**: the reviewer must be in the policy, in one of the rule's groups, and not
   the requester in any of its identities (:meth:`Workflow.eligibility`);
3. **the link**: a decision that came through a signed review link spends its nonce, once
   (a denial that lacks the comment its rule requires is refused before: nothing is spent);
4. **decide or reject**: the store records the decision under the request's lock (still
   pending, not expired, the same action the reviewer saw, one decision per reviewer); the
   refusals of the steps above are recorded as ``decision.rejected``;
5. **audit and notify**: the audit row and the notification outbox row are written in the
   decision's own transaction (the store does both); lineage follows the commit.

Opening a gate: the server decides with the policy, and nothing the pipeline sends can change
the outcome except the facts of the action itself; an action the policy allows costs one audit
row and nothing else. An idempotency key gives its request back only to a retry: the same
principal asking for the same action (fingerprint); anyone else reusing it is refused and
recorded as ``gate.conflict``, so a key never lends one gate's approval to another.

Named ``workflow`` rather than ``approvals`` (too close to :class:`~sluicegate.model.
ApprovalRequest`, one request) or ``decisions`` (it also opens, cancels, releases and expires
requests, and :class:`~sluicegate.model.Decision` is one reviewer's verdict).

The package: :mod:`~sluicegate.workflow.engine` (:class:`Workflow`, the paths of a request)
and :mod:`~sluicegate.workflow.opening` (what opening a gate plans, and answers).
"""

from __future__ import annotations

from sluicegate.workflow.engine import LINK_USED, CommentRequiredError, LinkUsedError, Workflow
from sluicegate.workflow.opening import CONFLICT, GateAnswer, GatePlan

__all__ = [
    "CONFLICT",
    "LINK_USED",
    "CommentRequiredError",
    "GateAnswer",
    "GatePlan",
    "LinkUsedError",
    "Workflow",
]
