# syntax=docker/dockerfile:1
#
# Targets:
#   runtime  the service: the pgbridge binary and the migrations, run as a non-root user
#   migrate  sqlx-cli and the migrations, for the one-shot `migrate` service in compose

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
RUN cargo build --release --locked --bin pgbridge

FROM rust:${RUST_VERSION}-bookworm AS sqlx
RUN cargo install sqlx-cli --locked --no-default-features --features postgres,rustls

FROM gcr.io/distroless/cc-debian12:nonroot AS migrate
COPY --from=sqlx /usr/local/cargo/bin/sqlx /usr/local/bin/sqlx
COPY migrations /app/migrations
WORKDIR /app
ENTRYPOINT ["sqlx", "migrate", "run", "--source", "/app/migrations"]

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /src/target/release/pgbridge /usr/local/bin/pgbridge
COPY migrations /app/migrations
WORKDIR /app
USER nonroot:nonroot
ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/pgbridge", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/pgbridge"]
