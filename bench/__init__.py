"""Benchmarks of the scheduler against a floor measured in the same run (issue 10).

``python -m bench`` (or ``make bench``) builds a database, serves the real app under gunicorn
on loopback and measures each scenario as a ratio to a baseline taken beside it: a floor
endpoint that reads one row by primary key, or the library the scenario is built on. See
``docs/performance.md``.
"""
