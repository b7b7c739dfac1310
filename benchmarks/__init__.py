"""``make bench``: how fast issue and verify are, and how many SQL statements they make, beside floors.

``python -m benchmarks`` runs, once per database in a child process (Django is configured once per process),
:mod:`benchmarks.backend` (the engine: services called directly) and :mod:`benchmarks.http_level` (the REST API
through Django's whole request stack), and prints both tables. See docs/performance.md.
"""
