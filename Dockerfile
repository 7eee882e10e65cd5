# Two images from one file:
#   docker build --target learner      -t casi-learner .       proto + learner + torch, no numba
#   docker build --target orchestrator -t casi-orchestrator .  proto + sim + orchestrator, no torch
# The learner installs torch from PyPI, whose Linux wheels are CUDA builds: the same image runs
# on CPU hosts and, with the GPU override of docker-compose.gpu.yml, on NVIDIA GPUs. To build a
# smaller CPU-only image, pass a PyTorch CPU wheel index: --build-arg TORCH_INDEX_URL=...
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 casi
WORKDIR /opt/casi
COPY proto/ proto/

FROM base AS learner
ARG TORCH_SPEC="torch>=2.6"
ARG TORCH_INDEX_URL=""
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
COPY learner/ learner/
RUN pip install ./proto ./learner
USER casi
EXPOSE 50051
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=12 \
    CMD ["python", "-m", "casi_proto.health", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["casi-learner", "--host", "0.0.0.0", "--port", "50051"]

FROM base AS orchestrator
COPY sim/ sim/
COPY orchestrator/ orchestrator/
COPY experiments/ experiments/
RUN pip install ./proto ./sim ./orchestrator
# numba's on-disk cache must be writable by the non-root user.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache
USER casi
STOPSIGNAL SIGTERM
ENTRYPOINT ["casi"]
