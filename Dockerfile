# syntax=docker/dockerfile:1
# Build stage: build our wheel, and install exactly the locked, hash-checked runtime
# dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements-build.lock requirements-runtime.lock pyproject.toml README.md ./
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements-build.lock
COPY signing_gateway ./signing_gateway
COPY fake_signer ./fake_signer
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements-runtime.lock \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl

# Runtime stage: the virtualenv only, run as an unprivileged user.
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SIGNING_GATEWAY_HOST=0.0.0.0 SIGNING_GATEWAY_PORT=8080 SIGNING_GATEWAY_PROBE_PORT=8081 \
    SIGNING_GATEWAY_ENVIRONMENT=production
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
# 8080: the API; 8081: /healthz, /readyz and /metrics only, for probes and scrapes.
EXPOSE 8080 8081
# As lenient as the livenessProbe in docs/operations.md (3 s, six misses): a gateway that is
# saturated still answers /healthz, and a restart under load only makes the overload worse.
# It asks /healthz where `serve` answers it, the port variables read as `serve` reads them,
# and fails where `serve` would refuse them (signing_gateway/healthcheck.py, standard library
# only: it runs every 10 s).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=6 \
  CMD ["python", "-m", "signing_gateway.healthcheck"]
ENTRYPOINT ["signing-gateway"]
CMD ["serve"]
