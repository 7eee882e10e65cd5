# Two images from one file:
#   docker build --target learner      -t casi-learner .       proto + learner + torch, no numba
#   docker build --target orchestrator -t casi-orchestrator .  proto + sim + orchestrator, no torch
# By default from python:3.11-slim and PyPI. Where no registry or package index can be reached,
# scripts/build-images.sh passes a local base image (PYTHON_IMAGE) and an image holding a
# wheelhouse in /wheels (WHEELS): pip then installs from /wheels alone. Either way pip runs in the
# *-build stages and only their venv, /opt/casi/venv, is copied into the final images.
# The learner installs torch from PyPI, whose Linux wheels are CUDA builds: the same image runs
# on CPU hosts and, with the GPU override of docker-compose.gpu.yml, on NVIDIA GPUs. To build a
# smaller CPU-only image, pass a PyTorch CPU wheel index: --build-arg TORCH_INDEX_URL=...
ARG PYTHON_IMAGE=python:3.11-slim
ARG WHEELS=no-wheels

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/casi/venv/bin:$PATH
RUN useradd --create-home --uid 10001 casi
WORKDIR /opt/casi

FROM base AS no-wheels
RUN mkdir /wheels

FROM ${WHEELS} AS wheels

FROM base AS build
COPY --from=wheels /wheels /wheels
ENV PIP_CONFIG_FILE=/opt/casi/pip.conf
RUN if ls /wheels/*.whl >/dev/null 2>&1; then \
        printf '[global]\nno-index = true\nfind-links = /wheels\n' > "$PIP_CONFIG_FILE"; \
    else : > "$PIP_CONFIG_FILE"; fi \
    && python3 -m venv /opt/casi/venv
# Dependencies first, from the pyproject.toml files alone: a change to the source installs
# only the CASI distributions again.
COPY scripts/list-deps.py ./
COPY proto/pyproject.toml proto/

FROM build AS learner-build
ARG TORCH_SPEC="torch>=2.6"
ARG TORCH_INDEX_URL=""
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
COPY learner/pyproject.toml learner/
RUN python list-deps.py proto learner > deps.txt && pip install -r deps.txt
COPY proto/ proto/
COPY learner/ learner/
RUN pip install --no-deps ./proto ./learner

FROM base AS learner
COPY --from=learner-build /opt/casi/venv /opt/casi/venv
USER casi
EXPOSE 50051
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=12 \
    CMD ["python", "-m", "casi_proto.health", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["casi-learner", "--host", "0.0.0.0", "--port", "50051"]

FROM build AS orchestrator-build
COPY sim/pyproject.toml sim/
COPY orchestrator/pyproject.toml orchestrator/
RUN python list-deps.py proto sim orchestrator > deps.txt && pip install -r deps.txt
COPY proto/ proto/
COPY sim/ sim/
COPY orchestrator/ orchestrator/
RUN pip install --no-deps ./proto ./sim ./orchestrator

FROM base AS orchestrator
COPY --from=orchestrator-build /opt/casi/venv /opt/casi/venv
COPY experiments/ experiments/
COPY scripts/compose-run.sh /opt/casi/compose-run.sh
# numba's on-disk cache (a volume under compose: compiling takes a minute on 2 busy cores);
# matplotlib's config goes to /tmp (a tmpfs under compose's read-only root filesystem).
RUN mkdir -m 1777 /opt/casi/numba-cache
ENV NUMBA_CACHE_DIR=/opt/casi/numba-cache MPLCONFIGDIR=/tmp/matplotlib
USER casi
STOPSIGNAL SIGTERM
ENTRYPOINT ["casi"]
