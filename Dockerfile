# syntax=docker/dockerfile:1
# The authz sidecar image. The build stage turns the source tree into a wheel (the same command as
# a local `pip wheel`, which compiles the check path: setup.py) and installs it, with its runtime
# dependencies, into a virtual environment; the final stage is a clean base with that environment
# only: no compiler, no pip, no caches.

# Both stages use the same base: the virtual environment's interpreter is the base's Python.
FROM python:3.11.14-slim-trixie AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The C compiler mypyc needs for the check path (the slim base has Python's headers). Debian's
# current gcc: the build stage is thrown away, and the compiled code's only input is the source.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# README.m[d] is the package's long description; the glob keeps the build working without it.
COPY pyproject.toml setup.py README.m[d] ./
COPY authz ./authz
# authz/policy/crd/ links to the CRD in deploy/crds: the wheel must carry the file itself.
COPY deploy/crds ./deploy/crds

RUN pip wheel . --no-deps -w /wheels

# Dependencies come as binary wheels only: nothing is compiled here.
RUN python -m venv --without-pip /opt/authz \
    && pip --python /opt/authz/bin/python install --only-binary=:all: /wheels/authz-*.whl


FROM python:3.11.14-slim-trixie

LABEL org.opencontainers.image.title="authz" \
      org.opencontainers.image.description="Authorization sidecar for Envoy ext_authz: OAuth 2.0 JWT validation, scopes, header rewrites" \
      org.opencontainers.image.licenses="Apache-2.0"

# The packaging tools of the base are not needed to run, and every package less is a CVE less.
RUN python -m pip uninstall --yes pip setuptools wheel

COPY --from=build /opt/authz /opt/authz

# Bytecode was compiled at install time; the root filesystem is read-only in the pod.
ENV PATH=/opt/authz/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so Kubernetes can verify runAsNonRoot; the Helm chart runs both containers of the pod
# with this user and group.
USER 10001:10001

# gRPC (standalone mode; the sidecar uses a Unix socket) and HTTP (/healthz, /readyz, /metrics).
EXPOSE 9000 9090

ENTRYPOINT ["authz"]
CMD ["serve"]
