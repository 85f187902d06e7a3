# Pilothouse: one image, two entry points.
#
#   pilothouse-operator ...             the operator (the Helm chart runs this)
#   pilothouse serve --config FILE      an agent runtime (the operator's Deployments run this)
#
# Build:  make image                     (docker build with BASE_IMAGE=python:3.11-slim)
# Offline (no registry): docker/dockerd.sh start && docker/base-image.sh &&
#         make image BASE_IMAGE=pilothouse-base:bookworm-py311
#
# The builder stage turns the source into a wheel and installs it, with the exact versions of
# requirements/constraints.txt, into a virtualenv at /opt/pilothouse; the final stage copies
# only that virtualenv onto a fresh base and runs as an unprivileged numeric user, so it meets
# the restricted Pod Security Standard (runAsNonRoot with a numeric UID) without overrides.

ARG BASE_IMAGE=python:3.11-slim

# ----------------------------------------------------------------------- requirements
# The runtime dependencies named in pyproject.toml, as a requirements file: the next stage
# installs them in a layer that stays cached until they (or the pins) change, not on every
# change of pyproject.toml or the source.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /src/pyproject.toml
RUN python3 -c "import tomllib; \
deps = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']; \
open('/requirements.txt', 'w').write(''.join(d + chr(10) for d in sorted(deps)))"

# ---------------------------------------------------------------------------- builder
FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONSAFEPATH=1
# PYTHONSAFEPATH: the source tree has a folder named `operator`, which must never shadow the
# standard library's module of that name while `python3 -m ...` runs in /src.

# The system CA bundle (both python:3.11-slim and Debian's ca-certificates have it) instead of
# pip's own, so builds behind a TLS-inspecting proxy work when the base trusts its CA.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=${PIP_CERT}

RUN python3 -m venv /opt/pilothouse \
    && python3 -m venv /opt/wheel-build \
    && /opt/wheel-build/bin/pip install --quiet "setuptools>=69" wheel

WORKDIR /src
# Dependencies first, at the exact versions of requirements/constraints.txt.
COPY requirements/constraints.txt requirements/constraints.txt
COPY --from=requirements /requirements.txt requirements/runtime.txt
RUN /opt/pilothouse/bin/pip install --quiet \
    -r requirements/runtime.txt -c requirements/constraints.txt

# Then Pilothouse itself, as a wheel (what a user would install), and a smoke test of both
# entry points so a packaging mistake (a subpackage missing from the wheel) fails the build.
COPY pyproject.toml README.md ./
COPY runtime runtime
COPY operator operator
RUN /opt/wheel-build/bin/pip wheel --quiet --no-deps --no-build-isolation \
        --wheel-dir /wheels . \
    && /opt/pilothouse/bin/pip install --quiet -c requirements/constraints.txt /wheels/*.whl \
    && /opt/pilothouse/bin/pip uninstall --quiet --yes pip setuptools \
    && /opt/pilothouse/bin/pilothouse --help >/dev/null \
    && /opt/pilothouse/bin/pilothouse-operator --help >/dev/null

# ---------------------------------------------------------------------------- final
FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pilothouse" \
      org.opencontainers.image.description="Pilothouse operator and agent runtime" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# One fixed numeric identity: Kubernetes can verify runAsNonRoot without a name lookup.
ARG UID=10001
# The audit spool (audit.spoolDir) is the one place the runtime writes; Kubernetes mounts an
# emptyDir there (the root file system is read-only), plain `docker run` uses this folder.
RUN groupadd --system --gid ${UID} pilothouse \
    && useradd --system --uid ${UID} --gid ${UID} --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pilothouse \
    && install -d -m 0750 -o ${UID} -g ${UID} /var/lib/pilothouse /var/lib/pilothouse/spool

COPY --from=builder /opt/pilothouse /opt/pilothouse

ENV PATH=/opt/pilothouse/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER ${UID}:${UID}
EXPOSE 8080
CMD ["pilothouse", "--help"]
