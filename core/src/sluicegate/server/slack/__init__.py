"""Slack as a channel: its interactions endpoint (:mod:`~sluicegate.server.slack.interactions`)
and the payload shapes it reads (:mod:`~sluicegate.server.slack.payloads`)."""
