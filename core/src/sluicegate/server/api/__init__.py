"""HTTP API v1, one module a resource: ``requests`` (gates and their decisions), ``audit``
(export and verification), ``lineage`` (the OpenLineage receiver and the dataset graph).

Routes are thin: they authenticate, translate JSON to the model, call the server's
:class:`~sluicegate.server.service.GateService` (or a store read) and answer with JSON.
"""
