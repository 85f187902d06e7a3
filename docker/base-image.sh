#!/usr/bin/env bash
# Build a local Debian bookworm + Python 3.11 base image without pulling anything.
#
# For machines that can run Docker but cannot reach a registry (air-gapped CI, sandboxes):
# debootstrap a minimal bookworm root file system with python3 (3.11), python3-venv and pip,
# and `docker import` it. The result stands in for python:3.11-slim:
#
#   docker/base-image.sh                       # -> pilothouse-base:bookworm-py311
#   make image BASE_IMAGE=pilothouse-base:bookworm-py311
#
# Idempotent: exits at once when the tag already exists (FORCE=1 rebuilds). Needs root,
# debootstrap and a running Docker daemon (docker/dockerd.sh provides both on Debian/Ubuntu).
# The host's CA bundle is copied into the image so pip inside builds trusts the same
# certificate authorities (TLS-inspecting proxies) as the host.
#
# Environment: MIRROR (default http://deb.debian.org/debian), SUITE (default bookworm),
# CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt), FORCE=1.
set -euo pipefail

TAG="${1:-pilothouse-base:bookworm-py311}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"

log() { printf 'base-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG exists (FORCE=1 to rebuild)"
    exit 0
fi
[[ $(id -u) == 0 ]] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap, or docker/dockerd.sh)"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (start one: docker/dockerd.sh)"

work="$(mktemp -d /var/tmp/pilothouse-base.XXXXXX)"
rootfs="$work/rootfs"
cleanup() {
    # debootstrap mounts /proc and /sys inside the root while it runs; never delete through them.
    local m
    for m in $(awk -v r="$rootfs" '$2 ~ "^"r {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" || true
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

started=$(date +%s)
log "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

if [[ -s "$CA_BUNDLE" ]]; then
    install -m 0644 "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
# Slim: package caches and lists, documentation, and the apt state a container never needs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
    "$rootfs"/tmp/* "$rootfs"/root/.cache

log "docker import -> $TAG"
tar --numeric-owner --xattrs -C "$rootfs" \
    --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -c . |
    docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        --message "debootstrap $SUITE minbase + $PACKAGES" \
        - "$TAG" >/dev/null
log "$TAG built in $(( $(date +%s) - started ))s ($(docker image inspect -f '{{.Size}}' "$TAG") bytes)"
