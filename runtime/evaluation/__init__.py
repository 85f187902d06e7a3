"""Evaluation: score an agent on a dataset of examples and gate a release on the score.

The testing pillar as a product. ``pilothouse eval`` (:mod:`command`) and the pytest plugin
(``pilothouse.runtime.pytest_plugin``) load a dataset (:mod:`datasets`), send every example to
an agent (:mod:`targets`: a running runtime over HTTP, or the real agent built in-process from
a runtime config), score the answers (:mod:`scorers`, with an optional LLM judge in
:mod:`judges`), aggregate and compare with a baseline (:mod:`results`, driven by
:mod:`runner`) and render reports (:mod:`reports`). :mod:`toolserver` is a tiny real HTTP tool
server for demos and evaluations of the shipped ``customer_support_v1`` dataset.

Nothing is imported here: the pytest plugin loads in every pytest run and must stay cheap.
"""

__all__: list[str] = []
