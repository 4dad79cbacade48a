# syntax=docker/dockerfile:1
#
# The service image: the pgbridge binary (which carries its migrations) on distroless, run as
# a non-root user. Built in two layers so that a source change does not rebuild every crate:
#   1. the dependencies, compiled against a dummy crate with the real Cargo.toml/Cargo.lock
#      (rebuilt only when those change);
#   2. the crates themselves (pgbridge and the workspace's `awsgi`).
# BuildKit keeps the crates.io downloads in a cache mount between builds.

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# build.rs includes the test harness's list of programs (it sets the tests' skip cfgs).
COPY tests/api/common/programs.rs tests/api/common/
COPY awsgi/Cargo.toml awsgi/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    mkdir -p src migrations awsgi/src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && : > awsgi/src/lib.rs \
 && cargo build --release --locked --features jemalloc --bin pgbridge \
 && rm -rf src migrations awsgi/src target/release/pgbridge* \
      target/release/.fingerprint/pgbridge-* target/release/.fingerprint/awsgi-* \
      target/release/deps/pgbridge-* target/release/deps/libpgbridge-* \
      target/release/deps/awsgi-* target/release/deps/libawsgi-*
COPY awsgi awsgi
COPY src src
COPY migrations migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    touch src/main.rs src/lib.rs awsgi/src/lib.rs \
 && cargo build --release --locked --features jemalloc --bin pgbridge

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /src/target/release/pgbridge /usr/local/bin/pgbridge
WORKDIR /app
USER nonroot:nonroot
ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/pgbridge", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/pgbridge"]
