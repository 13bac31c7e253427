# petclick grand-challenge container (autoPET IV, task 1: interactive lesion segmentation).
#
#   /input/images/ct/<uuid>.mha  /input/images/pet/<uuid>.mha  /input/lesion-clicks.json
#     -> /output/images/tumor-lesion-segmentation/<uuid>.mha   (PET geometry)
#
# Build from the repository root with the trained checkpoints (AutoRunner work_dir, bundle folders
# or model.pt files) copied into ./models first:
#   docker build -t petclick-gc .
#   docker run --rm --gpus all --network none -v $PWD/test/input:/input:ro -v $PWD/test/output:/output petclick-gc
# The base image brings CUDA and a matching PyTorch; petclick is installed with that torch pinned so
# pip never swaps it for another build (monai 1.6.1 needs torch >= 2.8). Another CUDA/PyTorch:
# --build-arg BASE=pytorch/pytorch:<tag>.
ARG BASE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PETCLICK_MODELS=/opt/algorithm/models

# grand-challenge runs algorithms as a non-root user
RUN groupadd -r user && useradd -m --no-log-init -r -g user user

WORKDIR /opt/algorithm
COPY --chown=user:user pyproject.toml setup.cfg README.md ./
COPY --chown=user:user petclick ./petclick
RUN TORCH="$(python -c 'import torch; print(torch.__version__.split("+")[0])')" \
    && python -m pip install "torch==${TORCH}" . \
    && python -c "import torch, SimpleITK, monai, petclick; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

COPY --chown=user:user models /opt/algorithm/models

USER user
ENTRYPOINT ["petclick", "gc"]
CMD ["--input", "/input", "--output", "/output", "--device", "auto"]
