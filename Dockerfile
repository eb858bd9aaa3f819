# syntax=docker/dockerfile:1
# The operator image: a static binary on a distroless base, running as a numeric non-root user,
# so that the pod meets the `restricted` level with a read-only root filesystem.

FROM rust:1.88-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin goreal-operator \
 && cp target/x86_64-unknown-linux-musl/release/goreal-operator /goreal-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /goreal-operator /goreal-operator
# distroless's nonroot user, by number so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/goreal-operator"]
CMD ["run"]
