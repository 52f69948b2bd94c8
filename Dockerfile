# The csflow platform image: the csflow CLI and the platform steps
# (`csflow-step outputs|upload|notify`), which Argo runs for every simulation,
# and the publish steps (`csflow-publish-step`; `csflow-image-build`, which
# needs git for clone and crane to assemble and push model images).
# Model steps run in each model's own image (built by the publish flow).
#
#   docker build -t gcr.io/csflow/csflow:0.1.0 .
#
# Everything comes from uv.lock (uv sync --frozen), without dev dependencies,
# into /opt/csflow; the final image runs as the non-root user 1000, which the
# flows' securityContext (runAsUser 1000, runAsNonRoot) expects.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm
# go-containerregistry's crane, the version cluster/dev builds (lib.sh GGCR_VERSION).
ARG CRANE_IMAGE=gcr.io/go-containerregistry/crane:v0.22.1

FROM ${CRANE_IMAGE} AS crane

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/csflow PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /src
# Dependencies first, so code changes do not re-resolve them.
COPY pyproject.toml uv.lock README.md* ./
RUN uv sync --frozen --no-dev --no-install-project
COPY flows ./flows
COPY sdk ./sdk
COPY cli ./cli
COPY engine ./engine
COPY runtime ./runtime
# The cluster's manifests, package data of csflow.cluster.argo (`csflow svc config`).
COPY cluster/argo ./cluster/argo
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
COPY --from=crane /ko-app/crane /usr/local/bin/crane
RUN groupadd --gid 1000 csflow \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin csflow
COPY --from=build /opt/csflow /opt/csflow
ENV PATH=/opt/csflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    CSFLOW_HOME=/tmp/csflow-home \
    CSFLOW_WORK_DIR=/tmp/csflow
USER 1000:1000
WORKDIR /tmp
# Argo sets each step's command (csflow-step ...); this is for `docker run`.
CMD ["csflow", "--help"]
