"""Pilothouse benchmarks: one script per benchmark, ``bench/bench_<name>.py``.

Each script measures its subject against a baseline run in the same process and the same run
(ratios, not absolute numbers, are what travels between machines), and writes
``bench/results/<name>.json`` plus a short ``bench/results/<name>.md``. ``make bench`` runs them
all through ``python -m bench``.
"""
