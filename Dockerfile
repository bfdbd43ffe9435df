# syntax=docker/dockerfile:1
# imd-exporter and imd-analyzer images, built from this repository:
#   docker build --target exporter -t imd-exporter .
#   docker build --target analyzer -t imd-analyzer .
# examples/docker-compose/docker-compose.yml builds both.

# ---- build: both binaries, release profile --------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the registry and target/ between builds on one machine.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p imd-exporter -p imd-analyzer \
    && install -m 0755 target/release/imd-exporter target/release/imd-analyzer /usr/local/bin/

# ---- common runtime: Debian slim, CA certificates, an unprivileged user ----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/imd --create-home imd

# ---- imd-exporter -----------------------------------------------------------
# Reads the host's /proc, /sys and / when they are mounted under /host and the
# --path.* flags point there (see examples/docker-compose). Runs as root, as
# process groups and some /proc files of other users' processes need it;
# give --user imd when you use neither.
FROM runtime AS exporter
COPY --from=build /usr/local/bin/imd-exporter /usr/local/bin/imd-exporter
WORKDIR /var/lib/imd
EXPOSE 9100
ENTRYPOINT ["/usr/local/bin/imd-exporter"]
CMD ["--storage.path=/var/lib/imd/exporter"]

# ---- imd-analyzer -----------------------------------------------------------
# Give it a configuration at /etc/imd/imd-analyzer.yml (mount it) and keep
# /var/lib/imd on a volume: model state survives restarts there.
FROM runtime AS analyzer
COPY --from=build /usr/local/bin/imd-analyzer /usr/local/bin/imd-analyzer
USER imd
WORKDIR /var/lib/imd
VOLUME ["/var/lib/imd"]
EXPOSE 9110
ENTRYPOINT ["/usr/local/bin/imd-analyzer"]
CMD ["--config.file=/etc/imd/imd-analyzer.yml", "--storage.path=/var/lib/imd/analyzer"]
