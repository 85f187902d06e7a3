"""Bearer tokens from a mounted Secret file: accepted exactly, rotated without a restart, and a
file that breaks keeps the last good tokens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pilothouse.runtime import errors, tokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_only_listed_tokens_in_bearer_form_are_accepted(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    _write(f, "# ops team\nalpha-token\n\n  beta-token  \n", 1)
    tf = tokens.TokenFile(f, clock=Clock())
    assert tf.accepts("Bearer alpha-token")
    assert tf.accepts(b"bearer beta-token")
    assert not tf.accepts("Bearer alpha")
    assert not tf.accepts("Basic alpha-token")
    assert not tf.accepts("alpha-token")
    assert not tf.accepts("Bearer ")
    assert not tf.accepts(None)
    assert not tf.accepts("Bearer # ops team")


def test_a_rotated_file_takes_effect_after_the_reload_interval(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    _write(f, "old\n", 1_000)
    clock = Clock()
    tf = tokens.TokenFile(f, clock=clock)
    _write(f, "new\n", 2_000)
    assert tf.accepts("Bearer old")  # not re-read yet
    clock.now += tokens.RELOAD_INTERVAL_SECONDS
    assert tf.accepts("Bearer new")
    assert not tf.accepts("Bearer old")


def test_a_broken_or_emptied_file_keeps_the_last_tokens(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    _write(f, "keep\n", 1_000)
    clock = Clock()
    tf = tokens.TokenFile(f, clock=clock)
    _write(f, "\n# nothing\n", 2_000)
    clock.now += 5
    assert tf.accepts("Bearer keep")
    f.unlink()
    clock.now += 5
    assert tf.accepts("Bearer keep")


def test_a_missing_or_empty_file_fails_at_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="authTokensFile"):
        tokens.TokenFile(tmp_path / "absent")
    (tmp_path / "empty").write_text("# no tokens\n")
    with pytest.raises(errors.ConfigError, match="holds no token"):
        tokens.TokenFile(tmp_path / "empty")
