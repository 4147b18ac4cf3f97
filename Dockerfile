# syntax=docker/dockerfile:1
# image-utility service images: two runtime targets, neither has torch.
#
#   docker build --target gpu -t image-utility:gpu .   # onnxruntime-gpu 1.31 on CUDA 13.0 + cuDNN 9 (the default target)
#   docker build --target cpu -t image-utility:cpu .   # onnxruntime 1.31 (CPU) on python:3.11-slim
#
# onnxruntime-gpu 1.27 and later are built for CUDA 13.x + cuDNN 9.x (1.31.1: build_and_package_info.cuda_version
# '13.0', NEEDED libcublas.so.13 libcudart.so.13 libcurand.so.10, cuDNN 9 loaded at run time), so the gpu base is
# NVIDIA's CUDA 13.0 runtime image with cuDNN 9; it needs an NVIDIA driver >= 580 on the host. For an older driver,
# build for CUDA 12 (onnxruntime-gpu 1.26, the last CUDA 12 + cuDNN 9 build; README.md, "The images"):
#   docker build --target gpu --build-arg CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg GPU_REQUIREMENTS=requirements-gpu-cuda12.txt -t image-utility:gpu-cuda12 .
#
# Versions are pinned: base images by tag below; every Python distribution by docker/requirements-{cpu,gpu}.txt
# and the build backend by docker/requirements-build.txt (all written by `python docker/lock.py`).
# The bundled models/ folder is baked in at /models; mount a folder or volume on /models to serve others.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UBUNTU_IMAGE=ubuntu:24.04
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- cpu: build the virtual environment
FROM ${PYTHON_IMAGE} AS cpu-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/tmp/requirements-build.txt
COPY docker/requirements-cpu.txt docker/requirements-build.txt /tmp/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --only-binary=:all: -r /tmp/requirements-cpu.txt
COPY pyproject.toml README.md /src/
COPY app/ /src/app/
RUN /opt/venv/bin/pip install --no-deps /src

# ---------------------------------------------------------------- cpu: runtime
FROM ${PYTHON_IMAGE} AS cpu
RUN groupadd --system --gid 10001 utility \
 && useradd --system --uid 10001 --gid utility --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin utility
COPY --from=cpu-build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/utility/healthcheck.py
COPY models/ /models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UTILITY_HOST=0.0.0.0 \
    UTILITY_PORT=8000 \
    UTILITY_MODELS_DIR=/models \
    UTILITY_PROVIDERS=CPUExecutionProvider
WORKDIR /opt/utility
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["python", "/opt/utility/healthcheck.py"]
ENTRYPOINT ["image-utility"]
CMD ["serve"]
LABEL org.opencontainers.image.title="image-utility (cpu)" \
      org.opencontainers.image.description="Is this image still useful for machines? ONNX models served on CPU." \
      org.opencontainers.image.licenses="Apache-2.0"

# ---------------------------------------------------------------- gpu: build the virtual environment
# Same Ubuntu release as the CUDA image, so the venv's python3.12 is the one the runtime stage installs.
FROM ${UBUNTU_IMAGE} AS gpu-build
ARG GPU_REQUIREMENTS=requirements-gpu.txt
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/tmp/requirements-build.txt
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12=3.12.3-* python3.12-venv=3.12.3-* \
 && rm -rf /var/lib/apt/lists/*
COPY docker/${GPU_REQUIREMENTS} /tmp/requirements-gpu.txt
COPY docker/requirements-build.txt /tmp/
RUN python3.12 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --only-binary=:all: -r /tmp/requirements-gpu.txt
COPY pyproject.toml README.md /src/
COPY app/ /src/app/
RUN /opt/venv/bin/pip install --no-deps /src

# ---------------------------------------------------------------- gpu: runtime (default target)
FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12=3.12.3-* \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 utility \
 && useradd --system --uid 10001 --gid utility --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin utility
COPY --from=gpu-build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/utility/healthcheck.py
COPY models/ /models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UTILITY_HOST=0.0.0.0 \
    UTILITY_PORT=8000 \
    UTILITY_MODELS_DIR=/models \
    UTILITY_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /opt/utility
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["python", "/opt/utility/healthcheck.py"]
ENTRYPOINT ["image-utility"]
CMD ["serve"]
LABEL org.opencontainers.image.title="image-utility (gpu)" \
      org.opencontainers.image.description="Is this image still useful for machines? ONNX models served with CUDA." \
      org.opencontainers.image.licenses="Apache-2.0"
