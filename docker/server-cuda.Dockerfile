# syntax=docker/dockerfile:1.7
# sluice-server for NVIDIA GPUs (candle's CUDA back end). Build from the repository root:
#   docker build -f docker/server-cuda.Dockerfile --build-arg CUDA_COMPUTE_CAP=80 -t sluice-server:dev-cuda .
# CUDA_COMPUTE_CAP selects the GPU generation the kernels are compiled for (80 = A100/A10G,
# 89 = L4/L40S, 90 = H100); the build machine needs no GPU.

ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu24.04
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ARG RUST_VERSION=1.95.0
ARG CUDA_COMPUTE_CAP=80
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} \
    RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/* \
 && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-server --features cuda \
 && install -D target/release/sluice-server /out/sluice-server

# The runtime image carries cuBLAS/cuRAND, which candle's CUDA back end links against.
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /out/sluice-server /usr/local/bin/sluice-server
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/sluice-server"]
CMD ["--model", "builtin:tiny", "--host", "0.0.0.0", "--port", "8000", "--device", "cuda"]
