# syntax=docker/dockerfile:1
# memstore image: one image, two programs.
#   default:   memstore serve           (the HTTP service, port 8080)
#   operator:  command: ["memstore-operator"]   (health on 8081)
# Build: `make image` (Docker with BuildKit, podman or buildah); `make test` builds it with
# buildah on a local Debian base (mk/image.mk) and runs it on a real node (tests/node).
#
# Invariants tests/helm/test_image.py checks without an engine:
#   - the final stage has no compilers or build tools (wheels are built in `builder`);
#   - it runs as the numeric non-root user 10001 (so runAsNonRoot can be verified);
#   - it writes nothing outside /tmp and the /data volume (readOnlyRootFilesystem works).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Build tools live only in this stage, for any dependency without a binary wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md requirements.lock ./
COPY service ./service
COPY operator ./operator
# The operator package links to the chart's CRD (its spec defaults): the wheel takes the file.
COPY charts/memstore/crds ./charts/memstore/crds
# Every dependency as a wheel, the project included, at the exact versions of
# requirements.lock (the ones make and CI test).
RUN pip wheel --wheel-dir /wheels -c requirements.lock '.[redis,mongodb,memcached,operator,mcp,model2vec]'

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="memstore" \
      org.opencontainers.image.description="Distributed memory for AI agents (service and operator)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MEMSTORE_HOST=0.0.0.0 \
    MEMSTORE_PORT=8080 \
    MEMSTORE_DATA_PATH=/data/memstore.db
# Install from the builder's wheels only (no index, no compiler here); the bind mount
# keeps the wheels out of every layer of this stage.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'memstore[redis,mongodb,memcached,operator,mcp,model2vec]' \
    && groupadd --system --gid 10001 memstore \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin memstore \
    && mkdir -p /data \
    && chown 10001:10001 /data
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["memstore"]
CMD ["serve"]
