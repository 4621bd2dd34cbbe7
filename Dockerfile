# syntax=docker/dockerfile:1
# The dataforest-operator image:
#   docker build --build-arg DATAFOREST_BUILD_COMMIT="$(git rev-parse --short=12 HEAD)" -t dataforest-operator .
# .dockerignore leaves .git out of the build context, so the commit that `--version` shows
# comes from this build argument; without it the binary says `commit unknown`.
#
# Both architectures at once (what .github/workflows/release.yml does on a tag):
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/dataforest-operator:<tag> --push .
#
# Build stage: the release binary from the locked dependency graph, with the same cargo
# command as `make release-binary` and the release workflow (tests/release.rs checks it).
# The cache mounts keep the crate registry and target folder between builds (BuildKit);
# the target folder is one per architecture, so a multi-platform build never shares one.
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
ARG DATAFOREST_BUILD_COMMIT=""
ARG TARGETARCH
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=dataforest-target-${TARGETARCH} \
    cargo build --release --locked -p dataforest-operator --bin dataforest-operator \
 && install -D -m 0755 target/release/dataforest-operator /out/dataforest-operator

# Runtime: distroless "cc" (glibc, libgcc, CA certificates; no shell, no package manager),
# as the nonroot user 65532. Not "static": the binary is linked dynamically against glibc
# (the default x86_64-unknown-linux-gnu target). The Data Forest client trusts the bundled
# webpki roots and the in-cluster Kubernetes client the ServiceAccount's ca.crt, so the
# image's CA bundle is not needed but harmless.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/dataforest-operator /usr/local/bin/dataforest-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dataforest-operator"]
CMD ["run"]
