# syntax=docker/dockerfile:1.7
# Segue Studio: the web app that gathers human judgements (segue/studio, `segue studio serve`);
# it cuts clips with ffmpeg. Build from the repository root:
#   docker build -f deploy/docker/studio.Dockerfile -t segue/studio:dev .
# It reads the songs' audio files at the paths the matcher indexed them under (their `uri`):
# mount the music library read-only at that same path, e.g. -v /srv/music:/srv/music:ro.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes. The `studio`
# extra is the web app and its databases; `cpu` (onnxruntime) because the `segue` command
# imports the embedding engine when it builds its parser.
COPY deploy/docker/requirements_from_pyproject.py pyproject.toml ./
RUN python requirements_from_pyproject.py pyproject.toml cpu studio > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY segue/ segue/
# The Studio serves its templates, static files and migrations from the installed package:
# fail here, not at the first page, when the wheel left them out (pyproject.toml package-data).
# -P: import the installed package, not the source tree in the working directory.
RUN pip install --no-cache-dir --no-deps . \
 && python -P -c "import pathlib, segue.studio as s; d = pathlib.Path(s.__file__).parent; \
missing = [p for p in ('templates/base.html', 'static/studio.js', 'static/studio.css', \
'migrations/env.py', 'migrations/script.py.mako') if not (d / p).is_file()]; \
assert not missing, f'segue.studio package data missing from the wheel: {missing}'"

FROM ${PYTHON_IMAGE} AS runtime
# Debian's security updates move ffmpeg's exact version; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 segue \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin segue \
 && mkdir -p /var/lib/segue/studio \
 && chown 10001:10001 /var/lib/segue/studio
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY deploy/docker/http_health_check.py http_health_check.py
# Nothing is written outside mounted volumes and /tmp: the root filesystem may be read-only.
# The database (SQLite unless SEGUE_STUDIO_DB_URL names PostgreSQL) and the clip cache live in
# SEGUE_STUDIO_DATA_DIR: mount a volume there (-v studio-data:/var/lib/segue/studio).
# The server binds loopback unless told otherwise: a container listens on every interface.
# /healthz needs no login, so HEALTHCHECK works; the admin pages stay closed until
# SEGUE_STUDIO_ADMIN_PASSWORD_FILE names a password file, which the image does not set.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    SEGUE_STUDIO_HOST=0.0.0.0 \
    SEGUE_STUDIO_PORT=8700 \
    SEGUE_STUDIO_METRICS_PORT=9104 \
    SEGUE_STUDIO_DATA_DIR=/var/lib/segue/studio
USER 10001:10001
EXPOSE 8700 9104
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/app/http_health_check.py"]
# `docker run IMAGE` serves; `docker run IMAGE invite --label ...` or `export ...` run the
# other actions of `segue studio` against the same data directory.
ENTRYPOINT ["segue", "studio"]
CMD ["serve"]
