# syntax=docker/dockerfile:1.7
# sluice-server for CPU nodes. Build from the repository root:
#   docker build -f docker/server.Dockerfile -t sluice-server:dev .
# Runs as uid 65532 with a read-only root filesystem (the operator mounts /tmp).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-server \
 && install -D target/release/sluice-server /out/sluice-server

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice-server /usr/local/bin/sluice-server
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/sluice-server"]
CMD ["--model", "builtin:tiny", "--host", "0.0.0.0", "--port", "8000"]
