"""pytest's entry point into Pilothouse's evaluation plugin (``pilothouse.runtime.pytest_plugin``).

pytest loads it in every run of a project that installs Pilothouse (entry point ``pytest11``).
It lives at the top level of the distribution on purpose: pytest marks a plugin distribution's
top-level modules for assertion rewriting, and a distribution made only of namespace-packaged
modules makes it fall back to the source folder names, one of which (``operator``) is a
standard-library module that is always imported already, so pytest warned on every run (an
error under ``-W error``). With this module present, it is the only name pytest marks.
"""

from pilothouse.runtime.pytest_plugin import Evaluator, pilothouse_eval, pytest_addoption

__all__ = ["Evaluator", "pilothouse_eval", "pytest_addoption"]
