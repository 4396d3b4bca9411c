#!/usr/bin/env bash
# The Docker engine and a locally built base image, for running deploy/Dockerfile and
# deploy/compose.yaml on a machine that reaches no image registry.
#
#   bash deploy/docker/engine.sh up      # installs docker.io, docker-compose, debootstrap (Debian) if
#                                        # missing; starts dockerd unless one answers already
#   bash deploy/docker/engine.sh base    # debootstraps a minimal Debian (python3, venv, pip) and
#                                        # `docker import`s it as $BASE_IMAGE (skipped if present)
#   bash deploy/docker/engine.sh context # fills deploy/build-extra/ from this machine: the CPU torch
#                                        # wheel from pip's find-links, the system CA bundle
#   bash deploy/docker/engine.sh down    # stops the dockerd that `up` started (by its pid file)
#
# dockerd runs without a bridge and without iptables rules: containers use host networking, so every
# address a peer binds or dials is on this machine.
set -euo pipefail

STATE=${DOCKER_STATE:-/tmp/dssl-docker}
BASE_IMAGE=${BASE_IMAGE:-dssl-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

install() {
    command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null \
        && return 0
    echo "docker: installing docker.io, docker-compose and debootstrap from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
}

up() {
    install
    mkdir -p "$STATE"
    if docker info >/dev/null 2>&1; then
        echo "docker: an engine already answers; using it"
        return 0
    fi
    dockerd --bridge=none --iptables=false --ip-masq=false --pidfile "$STATE/dockerd.pid" \
        >"$STATE/dockerd.log" 2>&1 &
    local i
    for i in $(seq 1 120); do
        docker info >/dev/null 2>&1 && { echo "docker: engine up (log $STATE/dockerd.log)"; return 0; }
        sleep 0.5
    done
    echo "docker: dockerd did not answer within 60 s; its log:" >&2
    tail -20 "$STATE/dockerd.log" >&2
    return 1
}

base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "docker: base image $BASE_IMAGE present"
        return 0
    fi
    local root="$STATE/rootfs"
    rm -rf "$root"
    echo "docker: debootstrapping Debian bookworm into $root (a few minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 \
        || { tail -20 "$STATE/debootstrap.log" >&2; return 1; }
    tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    echo "docker: imported $BASE_IMAGE"
}

context() {
    local extra=deploy/build-extra links wheel
    mkdir -p "$extra/wheels"
    links=$(python3 -m pip config get global.find-links 2>/dev/null || true)
    for wheel in ${links:+$links/torch-*+cpu-*.whl}; do
        [ -f "$wheel" ] && cp -u "$wheel" "$extra/wheels/" && echo "docker: build context gets $(basename "$wheel")"
    done
    [ -s /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$extra/ca.crt"
    return 0
}

down() {
    local file="$STATE/dockerd.pid" pid i
    [ -s "$file" ] || { echo "docker: no engine started by us"; return 0; }
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    echo "docker: engine stopped"
}

case "${1:-}" in
    up) up ;;
    base) base ;;
    context) context ;;
    down) down ;;
    *) echo "usage: $0 up|base|context|down" >&2; exit 2 ;;
esac
