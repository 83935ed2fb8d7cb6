# ganforge: one image for the API, the worker and the one-shot migrations (docker-compose.yml).
#
# The base image brings CUDA, cuDNN and a CUDA build of torch; the project is installed on top
# without replacing that torch (a constraints file pins it). On a machine without a GPU the same
# image trains on the CPU.
#
#   docker build -t ganforge .
#   docker run --rm -p 8000:8000 ganforge                      # the API (needs the URLs, see .env.example)
#   docker run --rm --gpus all ganforge ganforge worker         # a worker
ARG BASE_IMAGE=pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    GANFORGE_DATA_DIR=/datasets \
    PORT=8000

WORKDIR /app

# Fail early, and clearly, on a base image whose Python or torch is too old for the project.
RUN python -c "import sys, torch; assert sys.version_info >= (3, 11), sys.version; \
print('python', sys.version.split()[0], 'torch', torch.__version__)" \
 && python -c "import torch; print(f'torch=={torch.__version__}')" > /etc/ganforge-constraints.txt

COPY pyproject.toml README.md alembic.ini ./
COPY gan_engine ./gan_engine
COPY store ./store
COPY migrations ./migrations
COPY api ./api
COPY worker ./worker
COPY ganforge ./ganforge
RUN pip install --constraint /etc/ganforge-constraints.txt ".[service]" \
 && python -c "import ganforge.cli, worker.app, gan_engine, store"

# An unprivileged user owns the only writable folders: the embedded DATA_DIR and the dataset cache.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin ganforge \
 && mkdir -p /data /datasets \
 && chown ganforge:ganforge /data /datasets
USER ganforge

EXPOSE 8000
# The API's liveness probe. The worker serves no HTTP: docker-compose.yml gives it its own check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; \
urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=4)"

CMD ["sh", "-c", "exec ganforge api --host 0.0.0.0 --port \"${PORT}\" --proxy-headers"]
