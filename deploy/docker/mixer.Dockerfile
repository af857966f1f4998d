# syntax=docker/dockerfile:1.7
# Segue mixer: decodes and encodes audio with ffmpeg. Build from the repository root:
#   docker build -f deploy/docker/mixer.Dockerfile -t segue/mixer:dev .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY deploy/docker/requirements_from_pyproject.py pyproject.toml ./
RUN python requirements_from_pyproject.py pyproject.toml cpu > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY segue/ segue/
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
# Debian's security updates move ffmpeg's exact version; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 segue \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin segue
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY deploy/docker/grpc_health_check.py grpc_health_check.py
# Only the segue package is installed; the service shell runs from /app.
COPY services/__init__.py services/__init__.py
COPY services/mixer/ services/mixer/
# Nothing is written outside mounted volumes and /tmp: the root filesystem may be read-only.
# The server binds loopback unless told otherwise: a container listens on every interface.
# Health answers without a token so HEALTHCHECK works; every other call needs one
# (SEGUE_AUTH_TOKENS_FILE, which the image does not set: it refuses to start without it).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    SEGUE_GRPC_HOST=0.0.0.0 \
    SEGUE_OPEN_HEALTH=1 \
    SEGUE_GRPC_PORT=50053 \
    SEGUE_METRICS_PORT=9103
USER 10001:10001
EXPOSE 50053 9103
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/app/grpc_health_check.py"]
ENTRYPOINT ["python", "-m", "services.mixer"]
