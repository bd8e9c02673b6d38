#!/usr/bin/env bash
# `make image`: builds the Dockerfile as IMAGE (default localhost/socialhub:latest) with podman,
# or with docker where a Docker engine runs; installs podman from Debian's packages when neither
# is there. BASE_IMAGE, when set, is the base (e.g. python:3.11-slim); unset, the official
# python:3.11-slim is pulled, and where no registry serves it debian-base.sh builds a Debian
# bookworm base locally. `deploy/image/build.sh services` builds the test-only image of
# PostgreSQL, Redis and HAProxy (services.Containerfile) on that local base instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=deploy/image
image=${IMAGE:-localhost/socialhub:latest}
local_base=localhost/socialhub-base:bookworm
services=localhost/socialhub-services:bookworm
# The host's CA bundle reaches pip in the build stage as a build secret, never as a layer.
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# Podman and what `make image-test` runs with it, from Debian's packages, where missing.
install_podman() {
    local missing=()
    for package in podman runc netavark aardvark-dns iptables podman-compose debootstrap; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

if [ -n "${ENGINE:-}" ]; then
    engine=$ENGINE
elif command -v docker >/dev/null && ! command -v podman >/dev/null \
    && docker info >/dev/null 2>&1; then
    engine=docker
else
    install_podman
    engine=podman
fi
secret=()
if [ -s "$ca_bundle" ]; then
    secret=(--secret "id=ca_bundle,src=$ca_bundle")
fi
format=()
if [ "$engine" = podman ]; then
    # Docker's format keeps HEALTHCHECK (OCI's has no such field).
    format=(--format docker)
else
    export DOCKER_BUILDKIT=1
fi

if [ "${1:-}" = services ]; then
    [ "$engine" = podman ] || { echo "the services image is built with podman" >&2; exit 2; }
    "$here/debian-base.sh" "$local_base"
    podman build --quiet "${format[@]}" --build-arg "BASE_IMAGE=$local_base" \
        -f "$here/services.Containerfile" -t "$services" "$here" >/dev/null
    echo "built $services"
    exit 0
fi

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
    if "$engine" image inspect python:3.11-slim >/dev/null 2>&1 \
        || timeout 120 "$engine" pull --quiet python:3.11-slim >/dev/null 2>&1; then
        base=python:3.11-slim
    elif [ "$engine" = podman ]; then
        echo "no registry serves python:3.11-slim: building a Debian base locally"
        "$here/debian-base.sh" "$local_base"
        base=$local_base
    else
        echo "cannot pull python:3.11-slim; set BASE_IMAGE" >&2
        exit 1
    fi
fi
echo "building $image on $base with $engine"
"$engine" build "${format[@]}" "${secret[@]}" --build-arg "BASE_IMAGE=$base" -t "$image" .
echo "built $image: $("$engine" image inspect --format '{{.Size}}' "$image") bytes"
