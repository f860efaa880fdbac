"""Notifications: reviewers hear of requests where they work (Slack, Teams, a webhook).

- ``messages``: what each channel shows (Slack Block Kit, a Teams Adaptive Card, a JSON body),
  with every untrusted text escaped;
- ``signing``: Slack's request signatures (verified) and the generic webhook's (made);
- ``outbox``: notifications are rows written in the same transaction as the change that causes
  them, and a dispatcher sends them with retries, exactly once, whatever crashes.
"""
