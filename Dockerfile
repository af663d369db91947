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
# It asks /healthz where the gateway serves it, each variable read as `serve` reads it (its
# exact name first, else the name in any case; empty or a service link: none; a port in
# ASCII decimal digits only): on the probe port, or on the API port when there is no probe
# port (cleared for `serve --workers`, or a Kubernetes service link), else on 8080. A value
# `serve` refuses fails the check, as `serve` does not run; so does an API port of 0 without
# a probe port (a free port the check cannot know). It asks directly: urllib would send even
# 127.0.0.1 through an http_proxy set for the container unless no_proxy names it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=6 \
  CMD ["python", "-c", "import os, re, sys, urllib.request as r; e = os.environ; get = lambda n: e[n] if n in e else next((v for k, v in e.items() if k.upper() == n), ''); link = lambda v: re.fullmatch(r'(?:tcp|udp|sctp)://[^/\\s]+:\\d+', v, re.IGNORECASE); port = lambda n, low: (lambda v: None if not v or link(v) else int(v) if v.isascii() and v.isdigit() and low <= int(v) <= 65535 else sys.exit(f'{n}: not a port serve takes'))(get(n)); p, a = port('SIGNING_GATEWAY_PROBE_PORT', 1), port('SIGNING_GATEWAY_PORT', 0); p = p or (8080 if a is None else a) or sys.exit('SIGNING_GATEWAY_PORT=0 picks a free port; set SIGNING_GATEWAY_PROBE_PORT to check it'); sys.exit(r.build_opener(r.ProxyHandler({})).open(f'http://127.0.0.1:{p}/healthz', timeout=3).status != 200)"]
ENTRYPOINT ["signing-gateway"]
CMD ["serve"]
