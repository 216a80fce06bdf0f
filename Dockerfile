# A static musl build of the service on a scratch image: the binary, the public CAs (for image
# registries) and nothing else. Build: docker build -t openhands-k8s-runtime .
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# tiny_http with a fix of its own (vendor/tiny_http/PATCHED.md).
COPY vendor ./vendor
# Alpine's Rust targets musl and links statically.
RUN cargo build --release --locked --bin openhands-k8s-runtime

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/openhands-k8s-runtime /openhands-k8s-runtime
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/openhands-k8s-runtime"]
