#!/usr/bin/env bash
# Make a Docker daemon answer on this machine, for `make image` and the image tests.
#
#   docker/dockerd.sh start   # idempotent: prints "running" or "started"
#   docker/dockerd.sh stop    # stops only a daemon this script started
#
# `start` does nothing when `docker info` already works (Docker Desktop, a system service,
# CI's daemon). Otherwise, as root on Debian/Ubuntu, it installs docker.io and debootstrap
# with apt-get when missing, starts `dockerd --iptables=false --bridge=none` in the background
# (no NAT rules or bridge: builds and containers use `--network host`), records its pid and
# log under $STATE_DIR (default .cache/docker) and waits until it answers.
set -euo pipefail

STATE_DIR="${STATE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.cache/docker}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
START_TIMEOUT="${START_TIMEOUT:-60}"

log() { printf 'dockerd: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ours() {  # the recorded pid is alive and still a dockerd
    [[ -s "$PID_FILE" ]] || return 1
    local pid; pid="$(cat "$PID_FILE")"
    [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^dockerd '
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "need root to install ${missing[*]}"
    command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} yourself"
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

start() {
    if docker info >/dev/null 2>&1; then
        echo running
        return 0
    fi
    install_packages
    command -v docker >/dev/null || die "docker CLI not found"
    mkdir -p "$STATE_DIR"
    if ! ours; then
        log "starting dockerd (log: $LOG_FILE)"
        setsid dockerd --iptables=false --bridge=none </dev/null >"$LOG_FILE" 2>&1 &
        echo $! >"$PID_FILE"
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until docker info >/dev/null 2>&1; do
        ours || { tail -n 20 "$LOG_FILE" >&2; die "dockerd exited"; }
        ((SECONDS < deadline)) || { tail -n 20 "$LOG_FILE" >&2; die "dockerd not answering after ${START_TIMEOUT}s"; }
        sleep 0.2
    done
    echo started
}

stop() {
    ours || { log "no dockerd started by this script"; return 0; }
    local pid; pid="$(cat "$PID_FILE")"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$PID_FILE"
    echo stopped
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop" ;;
esac
