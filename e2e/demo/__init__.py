"""``make demo``: Pilothouse end to end on one machine, from nothing running to a scaled agent.

Run as ``python -m demo`` with ``e2e/`` on ``sys.path`` (the make targets in ``e2e/demo.mk`` do
that), next to the ``cluster`` package whose control plane it starts. Modules:

- :mod:`demo.cli`: the command line, signal handling, exit codes, teardown.
- :mod:`demo.run`: steps 1-4 (services, chart and operator, examples, runtime).
- :mod:`demo.scenes`: steps 5-7 (requests, history/metrics/status, flood and scaling).
- :mod:`demo.stack`: every process the demo starts, stopped in reverse order.
- :mod:`demo.manifests`: pure transformations (examples pointed at local services, chart parts).
- :mod:`demo.kube`, :mod:`demo.console`, :mod:`demo.waiting`: kubectl, output, deadlines.
"""

__all__ = ["cli", "console", "kube", "manifests", "run", "scenes", "stack", "waiting"]
