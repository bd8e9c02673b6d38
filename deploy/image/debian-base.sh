#!/usr/bin/env bash
# Builds a minimal Debian 12 (bookworm) base image with Python 3.11 locally, for machines where
# no registry serves base images: debootstrap from Debian's archive, then `podman import`.
#   deploy/image/debian-base.sh [TAG]        (default localhost/socialhub-base:bookworm)
# Does nothing when TAG exists already. Needs root (debootstrap) and podman.
# The image has Debian's python3 (3.11), python3-venv (for the build stage's virtualenv) and
# Debian's CA certificates, with security updates applied; no compilers, docs or apt lists.
set -euo pipefail
tag=${1:-localhost/socialhub-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if podman image exists "$tag"; then
    echo "base image $tag exists"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

root=$(mktemp -d /var/tmp/socialhub-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm (minbase) into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log"; exit 1; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
# Security updates since the release, then everything a running container never reads.
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get -y -qq upgrade >/dev/null && apt-get clean'
# Derived images (deploy/image/services.Containerfile) install without recommends or docs.
cat >"$root/etc/apt/apt.conf.d/90socialhub" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
cat >"$root/etc/dpkg/dpkg.cfg.d/90socialhub-nodoc" <<'DPKG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

tar --numeric-owner -C "$root" -c . | podman import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase bookworm + python3" - "$tag" >/dev/null
echo "built $tag ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"
