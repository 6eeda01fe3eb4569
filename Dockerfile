# syntax=docker/dockerfile:1
# ecom-stream: multi-stage build, small non-root runtime image.
#   docker build -t ecom-stream .
#   docker run --rm -p 9464:9464 -e PUBSUB_EMULATOR_HOST=... ecom-stream run
# Not built in this project's CI (its machines have no Docker engine); keep it in step with
# Cargo.toml by reading.

FROM rust:1-bookworm AS build
WORKDIR /src
# The manifest declares benches, so cargo wants their files even for `--bin`.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Cache mounts keep the registry and target dir between builds (BuildKit); the binary is
# copied out because the target mount does not outlive the RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ecom-stream \
    && cp target/release/ecom-stream /usr/local/bin/ecom-stream

FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to Google Cloud Pub/Sub and to Cassandra with TLS enabled.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ecom \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ecom-stream \
       --create-home --shell /usr/sbin/nologin ecom
COPY --from=build /usr/local/bin/ecom-stream /usr/local/bin/ecom-stream
USER 10001:10001
WORKDIR /var/lib/ecom-stream
# Inside a container the listener must not be loopback-only, or nothing outside reaches
# /metrics and the probes. The embedded store lives in the (mountable) home directory.
ENV ECOM_METRICS_ADDR=0.0.0.0:9464 \
    ECOM_DATA_DIR=/var/lib/ecom-stream/data
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/ecom-stream"]
CMD ["run"]
