"""Notifications: reviewers hear of requests where they work (Slack, Teams, a webhook...).

- :mod:`.planner`: notifications are outbox rows written in the same transaction as the change
  that causes them (reminders and escalations by a periodic sweep);
- :mod:`.dispatch`: a dispatcher sends them with retries, once, whatever crashes;
- :mod:`.channels`: a registry of channels (Slack, Teams, a signed webhook, Prefect's resume,
  console, no-op, and any of one's own): which targets each accepts, and how it sends;
- :mod:`.view` and :mod:`.text`: what every channel says of a request, and how untrusted text
  is fitted into each service's limits;
- :mod:`.signing`: Slack's request signatures (verified) and the generic webhook's (made).
"""
