# syntax=docker/dockerfile:1
# Build stage: install the client package and the service into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY clients/python clients/python
RUN /opt/venv/bin/pip install ./clients/python
COPY pyproject.toml README.md ./
COPY server server
COPY migrations migrations
RUN /opt/venv/bin/pip install .

# Runtime stage: the virtualenv only, run as an unprivileged user.
FROM python:3.11-slim
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
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; c = grpc.insecure_channel('127.0.0.1:' + os.environ.get('PORT', '50051')); r = g.HealthStub(c).Check(h.HealthCheckRequest(), timeout=2); sys.exit(0 if r.status == h.HealthCheckResponse.SERVING else 1)"]
ENTRYPOINT ["socialhub"]
CMD ["serve"]
