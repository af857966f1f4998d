# syntax=docker/dockerfile:1.7
# Segue embedder, GPU build (onnxruntime-gpu with the CUDA execution provider). Build from the
# repository root:
#   docker build -f deploy/docker/embedder-gpu.Dockerfile -t segue/embedder-gpu:dev .
# The `gpu` extra installs CUDA and cuDNN as pip wheels (onnxruntime-gpu[cuda,cudnn]), which
# ONNX Runtime loads first; the CUDA base image supplies the driver glue the NVIDIA container
# toolkit expects. CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 makes a ~2 GB smaller image.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
# Ubuntu 24.04's python3.12, which Segue supports (>=3.11,<3.13); its patch level follows
# the base image tag.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY deploy/docker/requirements_from_pyproject.py pyproject.toml ./
RUN python requirements_from_pyproject.py pyproject.toml gpu > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY segue/ segue/
RUN pip install --no-cache-dir --no-deps .

FROM ${CUDA_IMAGE} AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 segue \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin segue
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY models/segue_stream.onnx models/segue_stream.onnx
COPY deploy/docker/grpc_health_check.py grpc_health_check.py
# Only the segue package is installed; the service shell runs from /app.
COPY services/__init__.py services/__init__.py
COPY services/embedder/ services/embedder/
# Nothing is written outside mounted volumes and /tmp: the root filesystem may be read-only.
# The server binds loopback unless told otherwise: a container listens on every interface.
# Health answers without a token so HEALTHCHECK works; every other call needs one
# (SEGUE_AUTH_TOKENS_FILE, which the image does not set: it refuses to start without it).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    SEGUE_GRPC_HOST=0.0.0.0 \
    SEGUE_OPEN_HEALTH=1 \
    SEGUE_GRPC_PORT=50051 \
    SEGUE_METRICS_PORT=9101 \
    SEGUE_MODEL_PATH=/app/models/segue_stream.onnx
USER 10001:10001
EXPOSE 50051 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/app/grpc_health_check.py"]
ENTRYPOINT ["python", "-m", "services.embedder"]
