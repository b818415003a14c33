# syntax=docker/dockerfile:1.7
# The Sluice operator. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t sluice-operator:dev .
# Multi-stage: compile with the Rust toolchain, ship only the binary on distroless, as nonroot.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-operator \
 && install -D target/release/sluice-operator /out/sluice-operator

# rustls (no OpenSSL) links only against glibc: the distroless cc image is enough.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice-operator /usr/local/bin/sluice-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
CMD ["run"]
