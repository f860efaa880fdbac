"""The test suites, as packages under the repository's root.

This file and the ``__init__.py`` of every folder under tests/core make their modules
``tests.core...``: pytest (its default ``prepend`` import mode) puts the folder above the
topmost package, the repository's root, first on ``sys.path``, for every suite, a file run
alone and each pytest-xdist worker alike. So shared test code is imported by its full name
(``from tests.core.support.serverproc import ServerProcess``), never through a ``sys.path``
insert, and test files in different folders may share a name (``test_audit.py`` in tests/core
and in tests/core/server/api/).
The adapter suites' folders are not packages: each of their files runs in its own environment
and imports its siblings by name.
"""
