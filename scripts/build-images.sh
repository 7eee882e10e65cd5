#!/usr/bin/env bash
# Builds casi-learner:latest and casi-orchestrator:latest without an image registry or a package
# index reachable from the build: run as root on a host with a Docker engine, debootstrap, and
# pip access (PyPI or local wheels) on the host.
#   1. casi-base:bookworm, a Debian bookworm made by debootstrap and `docker import`, with a venv
#      (python, pip) on PATH: stands in for python:3.11-slim. Skipped when the image exists.
#   2. build/wheelhouse: `pip download` on the host of torch (CPU) and every dependency,
#      imported as the image casi-wheelhouse:latest. Skipped when the folder is there.
#   3. `docker build` of both targets of the Dockerfile with PYTHON_IMAGE and WHEELS pointing at
#      them: pip installs offline in a build stage, and only the installed venv reaches the
#      final images (the wheels do not).
# Environment: TORCH_SPEC (default torch==2.13.0, the CPU build `make setup` installs; from pip's
# find-links where it lies on disk, else give TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu:
# PyPI's Linux torch is the CUDA build, GBs), TORCH_INDEX_URL (default none),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), WHEELHOUSE (default build/wheelhouse),
# PIP (default .venv/bin/pip, else pip3).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=casi-base:bookworm
WHEELS_IMAGE=casi-wheelhouse:latest
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WHEELHOUSE=${WHEELHOUSE:-build/wheelhouse}
PIP=${PIP:-$( [ -x .venv/bin/pip ] && echo .venv/bin/pip || echo pip3)}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}  # the Dockerfile needs no BuildKit; Docker 20.10's
# legacy builder and a client without buildx both build it

say() { printf 'build-images: %s\n' "$*" >&2; }
seconds() { echo $(($(date +%s) - $1)) s; }

base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE exists; not rebuilt (docker rmi $BASE_IMAGE to rebuild it)"
        return
    fi
    command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    local start root
    start=$(date +%s)
    root=$(mktemp -d /tmp/casi-base.XXXXXX)
    trap 'rm -rf "$root"' RETURN
    say "debootstrap bookworm into $root from $DEBIAN_MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 \
        || { tail -20 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    chroot "$root" python3 -m venv /opt/python
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    say "$BASE_IMAGE made in $(seconds "$start")"
}

wheelhouse() {
    if [ -d "$WHEELHOUSE" ] && ls "$WHEELHOUSE"/torch-* >/dev/null 2>&1; then
        say "$WHEELHOUSE exists; not downloaded again (remove it to refresh it)"
    else
        local start
        start=$(date +%s)
        mkdir -p "$WHEELHOUSE"
        # Our own four distributions are built in the image from its source: only their
        # dependencies and the build backend are needed here.
        "$PIP" download -q -d "$WHEELHOUSE" --only-binary=:all: \
            ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
            "$TORCH_SPEC" "setuptools>=68" ./proto ./sim ./learner ./orchestrator
        rm -f "$WHEELHOUSE"/casi_*
        ls "$WHEELHOUSE"/torch-*+cpu-* >/dev/null 2>&1 \
            || say "warning: the torch wheel is not a CPU build (see TORCH_INDEX_URL)"
        say "$WHEELHOUSE: $(du -sh "$WHEELHOUSE" | cut -f1) downloaded in $(seconds "$start")"
    fi
    local start
    start=$(date +%s)
    tar -C "$(dirname "$WHEELHOUSE")" -c --transform "s|^$(basename "$WHEELHOUSE")|wheels|" \
        "$(basename "$WHEELHOUSE")" | docker import - "$WHEELS_IMAGE" >/dev/null
    say "$WHEELS_IMAGE imported in $(seconds "$start")"
}

images() {
    local target start
    for target in learner orchestrator; do
        start=$(date +%s)
        docker build -q --target "$target" -t "casi-$target:latest" \
            --build-arg PYTHON_IMAGE="$BASE_IMAGE" --build-arg WHEELS="$WHEELS_IMAGE" \
            --build-arg TORCH_SPEC="$TORCH_SPEC" . >/dev/null
        say "casi-$target:latest built in $(seconds "$start"), $(docker image inspect \
            --format '{{.Size}}' "casi-$target:latest" | awk '{printf "%.0f MB", $1 / 1e6}')"
    done
}

base_image
wheelhouse
images
