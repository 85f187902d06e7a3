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

RUN python3 -m venv /opt/pilothouse

WORKDIR /src
# Dependencies first: this layer is reused until the pinned versions change.
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml README.md ./
COPY runtime runtime
COPY operator operator
RUN python3 -m venv /opt/wheel-build \
    && /opt/wheel-build/bin/pip install --quiet "setuptools>=69" wheel \
    && /opt/wheel-build/bin/pip wheel --quiet --no-deps --no-build-isolation \
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
RUN groupadd --system --gid ${UID} pilothouse \
    && useradd --system --uid ${UID} --gid ${UID} --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pilothouse

COPY --from=builder /opt/pilothouse /opt/pilothouse

ENV PATH=/opt/pilothouse/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER ${UID}:${UID}
EXPOSE 8080
CMD ["pilothouse", "--help"]
