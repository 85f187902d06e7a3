"""``pilothouse serve`` refuses to start on a bad config, naming the field, with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.runtime import cli


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(["serve", *argv])
    return code, capsys.readouterr().err


def test_an_invalid_field_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "runtime.yaml"
    f.write_text(
        "agent: support\n"
        "model: {endpoint: 'http://127.0.0.1:9/v1', name: m}\n"
        "workers: {concurrency: 0, queueMaxLenght: 5}\n"
    )
    code, err = _run(capsys, "--config", str(f))
    assert code == 2
    assert "workers.concurrency" in err
    assert "workers.queueMaxLenght" in err


def test_a_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "--config", str(tmp_path / "absent.yaml"))
    assert code == 2
    assert "absent.yaml" in err


def test_a_port_out_of_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "runtime.json"
    f.write_text('{"agent": "support", "model": {"endpoint": "http://h/v1", "name": "m"}}')
    code, err = _run(capsys, "--config", str(f), "--port", "70000")
    assert code == 2
    assert "--port 70000" in err


def test_an_unset_redis_url_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PILOTHOUSE_REDIS_URL", raising=False)
    f = tmp_path / "runtime.json"
    f.write_text('{"agent": "support", "model": {"endpoint": "http://h/v1", "name": "m"}}')
    code, err = _run(capsys, "--config", str(f))
    assert code == 2
    assert "PILOTHOUSE_REDIS_URL" in err
