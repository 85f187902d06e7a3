"""Bearer tokens with roles from a mounted Secret file: each token proves one identity with its
roles, rotated without a restart; a file that breaks keeps the last good tokens; a bad line is
an error naming the line. And what each role grants."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pilothouse.runtime import errors, identities, tokens
from pilothouse.runtime.identities import Permission, Role


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _name(tf: tokens.TokenFile, header: str | bytes | None) -> str | None:
    found = tf.identify(header)
    return None if found is None else found.name


def test_each_listed_token_proves_its_identity_in_bearer_form(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    _write(f, "# ops team\nalpha-token alice approve,read\n\n  beta-token  chat  delegate \n", 1)
    tf = tokens.TokenFile(f, clock=Clock())
    alice = tf.identify("Bearer alpha-token")
    assert alice is not None
    assert alice.name == "alice"
    assert alice.roles == {Role.APPROVE, Role.READ}
    assert _name(tf, b"bearer beta-token") == "chat"
    for bad in ("Bearer alpha", "Basic alpha-token", "alpha-token", "Bearer ", None):
        assert tf.identify(bad) is None, bad
    assert tf.identify("Bearer # ops team") is None
    assert tf.identify("Bearer alice") is None  # a name is not a token


def test_roles_grant_exactly_their_permissions() -> None:
    def grants(*roles: Role) -> set[Permission]:
        who = identities.Identity("x", frozenset(roles))
        return {p for p in Permission if who.granted(p)}

    assert grants(Role.SUBMIT) == {Permission.SUBMIT}
    assert grants(Role.READ) == {Permission.READ}
    assert grants(Role.APPROVE) == {Permission.APPROVE}
    assert grants(Role.DELEGATE) == {Permission.SUBMIT, Permission.DELEGATE}
    assert grants(Role.ADMIN) == set(Permission)
    assert grants() == set()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("only-a-token", "line 2: expected TOKEN IDENTITY ROLE"),
        ("tok alice", "line 2: expected TOKEN IDENTITY ROLE"),
        ("tok alice approve,root", "line 2: unknown role 'root'"),
        ("tok alice ,,", "line 2: no roles"),
        ("tok a b c", "line 2: expected TOKEN IDENTITY ROLE"),
    ],
)
def test_a_bad_line_is_an_error_naming_it(tmp_path: Path, line: str, problem: str) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"# header\n{line}\n")
    with pytest.raises(errors.ConfigError, match=problem):
        tokens.TokenFile(f)


def test_a_token_listed_twice_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("tok alice approve\ntok bob submit\n")
    with pytest.raises(errors.ConfigError, match="line 2: this token is listed twice"):
        tokens.TokenFile(f)


def test_a_rotated_file_takes_effect_after_the_reload_interval(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    _write(f, "old alice submit\n", 1_000)
    clock = Clock()
    tf = tokens.TokenFile(f, clock=clock)
    _write(f, "new alice submit,approve\n", 2_000)
    assert _name(tf, "Bearer old") == "alice"  # not re-read yet
    clock.now += tokens.RELOAD_INTERVAL_SECONDS
    found = tf.identify("Bearer new")
    assert found is not None
    assert found.roles == {Role.SUBMIT, Role.APPROVE}
    assert tf.identify("Bearer old") is None


def test_a_broken_emptied_or_invalid_file_keeps_the_last_tokens(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    _write(f, "keep alice submit\n", 1_000)
    clock = Clock()
    tf = tokens.TokenFile(f, clock=clock)
    _write(f, "\n# nothing\n", 2_000)
    clock.now += 5
    assert _name(tf, "Bearer keep") == "alice"
    _write(f, "other bob superuser\n", 3_000)
    clock.now += 5
    assert _name(tf, "Bearer keep") == "alice"
    assert tf.identify("Bearer other") is None
    f.unlink()
    clock.now += 5
    assert _name(tf, "Bearer keep") == "alice"


def test_a_missing_or_empty_file_fails_at_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="authTokensFile"):
        tokens.TokenFile(tmp_path / "absent")
    (tmp_path / "empty").write_text("# no tokens\n")
    with pytest.raises(errors.ConfigError, match="holds no token"):
        tokens.TokenFile(tmp_path / "empty")
