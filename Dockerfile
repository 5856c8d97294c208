# syntax=docker/dockerfile:1
#
# batchsync as a one-shot container: it runs one command and exits with its exit code.
#
#   docker build -t batchsync .
#   docker run --rm -v "$PWD/inventories:/config:ro" batchsync apply /config/prod.toml
#
# Two stages. The first builds the wheel and installs it, with the exact dependencies
# requirements/image.txt pins with their hashes (compiled by `make lock`), from published
# wheels only, into a virtualenv; the second is the same slim Python with that virtualenv
# alone: no compiler, no pip cache, no sources, no tests. No HEALTHCHECK: nothing keeps running.
#
# tests/test_deploy.py runs these RUN lines on the host (no container engine needed), so
# every absolute path a RUN line uses comes from a variable (ENV) the test can point
# elsewhere. The image build itself is checked where an engine is available.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    BUILDER=/opt/build \
    VENV=/opt/batchsync \
    WHEELS=/wheels
WORKDIR /src
COPY requirements/build.txt requirements/image.txt ./requirements/
COPY pyproject.toml README.md LICENSE ./
COPY batchsync ./batchsync
# The wheel, built by the locked setuptools (not whichever release is newest that day), in
# a virtualenv of its own that the image never gets.
RUN python -m venv "$BUILDER" \
 && "$BUILDER/bin/python" -m pip install --require-hashes --only-binary=:all: -r requirements/build.txt \
 && "$BUILDER/bin/python" -m pip wheel --no-build-isolation --no-deps --wheel-dir "$WHEELS" .
# The dependencies as locked: pip refuses any other version and any file whose hash
# differs. Then the wheel alone, and a check that the lock covered all it requires.
# --only-binary: every dependency comes as a published wheel, so nothing is compiled here
# and no compiler is needed in either stage. No extras: test and lint tools stay out.
# --compile: byte-compiled here, since the image sets PYTHONDONTWRITEBYTECODE and would
# otherwise compile every module again on every start.
RUN python -m venv --without-pip "$VENV" \
 && python -m pip --python "$VENV/bin/python" install --compile --require-hashes --only-binary=:all: -r requirements/image.txt \
 && python -m pip --python "$VENV/bin/python" install --compile --no-deps --only-binary=:all: "$WHEELS"/batchsync-*.whl \
 && python -m pip --python "$VENV/bin/python" check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="batchsync" \
      org.opencontainers.image.description="Keep the shop order statuses of many Sendcloud integrations in their desired state" \
      org.opencontainers.image.licenses="MIT"
ENV VENV=/opt/batchsync
ENV PATH="${VENV}/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Same path as in the build stage: a virtualenv's scripts name their interpreter by path.
COPY --from=build ${VENV} ${VENV}
RUN groupadd --system --gid 10001 batchsync \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin batchsync
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["batchsync"]
CMD ["--help"]
