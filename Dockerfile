# syntax=docker/dockerfile:1
# One image for every accel component: `accel serve webhook|extender|api ...`, `accel certs ensure ...`.
#
#   docker build -t accel:e2e .
#
# Builder: wheels for the dependencies (their own cached layer), then for accel (no compiler
# needed: every dependency ships manylinux wheels), installed into /install (a --prefix tree).
# Final: the same slim Python, the /install tree copied over /usr/local, a fixed non-root user,
# nothing written at runtime outside /tmp (the manifests mount an emptyDir there and set
# readOnlyRootFilesystem).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, built from the metadata alone (a stub package stands in for the source), so
# this layer survives source-only changes.
COPY pyproject.toml README.md ./
RUN mkdir accel && touch accel/__init__.py \
 && pip wheel --wheel-dir /wheels . \
 && rm -rf /wheels/accel-*.whl accel build accel.egg-info
COPY accel accel
COPY webhook webhook
COPY extender extender
COPY api api
COPY serving serving
COPY certs certs
COPY cli cli
COPY kube kube
# No extras: matplotlib (accel[plot], for simulate --plot and the demo) stays out of the image.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-index --find-links /wheels --prefix /install accel \
 && python -m compileall -q /install

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="accel" \
      org.opencontainers.image.description="Type-aware GPU admission and scheduling for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode was compiled in the builder; never write .pyc (or matplotlib caches) at runtime.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp \
    HOME=/tmp \
    TMPDIR=/tmp
RUN groupadd --gid 65532 accel \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin accel
COPY --from=builder /install /usr/local
USER 65532:65532
WORKDIR /tmp
EXPOSE 8443
ENTRYPOINT ["accel"]
CMD ["--help"]
