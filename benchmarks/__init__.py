"""``make bench``: how fast issue and verify are, and how many SQL statements they make, beside two floors.

``python -m benchmarks`` runs :mod:`benchmarks.backend` once per database in a child process (Django is configured
once per process) and prints one table. See docs/performance.md.
"""
