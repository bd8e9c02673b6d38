# syntax=docker/dockerfile:1
# Socialhub's image: `make image` builds it with podman (or docker), README "Container image".
# BASE_IMAGE is any Debian-like image with Python 3.11+ and `python3 -m venv`: the official
# python:3.11-slim where a registry serves it, else the Debian bookworm base that
# deploy/image/debian-base.sh builds locally (debootstrap, then `podman import`).
ARG BASE_IMAGE=python:3.11-slim

# Build stage: the client package and the service, without the `embedded` extra, in a virtualenv.
# Every dependency has a binary wheel, so no compiler is needed even here.
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# An index other than PyPI, if the build machine must use one (no credentials: ARGs are kept
# in the image's history; pass those in the CA secret's place).
ARG PIP_INDEX_URL=https://pypi.org/simple
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY clients/python clients/python
COPY pyproject.toml README.md ./
COPY server server
COPY migrations migrations
# ca_bundle: the build machine's CA bundle, for HTTPS through an intercepting proxy. A build
# secret is mounted for this one RUN only and is in no layer of the image; ordinary machines
# pass none. pip and its own dependencies leave the virtualenv: the runtime installs nothing.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && /opt/venv/bin/pip install --quiet ./clients/python . \
    && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools

# Runtime stage: the base and the virtualenv only, run as an unprivileged user.
FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home-dir /app socialhub
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=50051 \
    STATE_DIR=/app/state
WORKDIR /app
USER socialhub
# gRPC, and Prometheus metrics (METRICS_PORT; METRICS_HOST defaults to HOST, 0.0.0.0 here).
EXPOSE 50051 9464
# The gRPC health service's overall status. Podman runs it only where systemd runs its timers;
# `podman healthcheck run` runs it by hand.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; c = grpc.insecure_channel('127.0.0.1:' + os.environ.get('PORT', '50051')); r = g.HealthStub(c).Check(h.HealthCheckRequest(), timeout=2); sys.exit(0 if r.status == h.HealthCheckResponse.SERVING else 1)"]
ENTRYPOINT ["socialhub"]
CMD ["serve"]
