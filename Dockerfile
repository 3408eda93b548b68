# syntax=docker/dockerfile:1
# The `nightshift` binary in a small image: the admin on port 8080, SQLite in the volume /data.
#
#   docker build -t nightshift .
#   docker run -p 8080:8080 -v nightshift-data:/data nightshift
#
# The first start logs a one-time link to create the first admin (`docker logs`). Settings come
# from flags, NIGHTSHIFT_* variables or /data/nightshift.toml (see README, "Configuration");
# `docker run --rm -v nightshift-data:/data nightshift config` shows the effective ones.
# Jobs get 25 s to finish at shutdown: stop with `docker stop -t 30` (Docker's default is 10 s).
# docker-compose.yml runs PostgreSQL with one `serve` and two `worker` nodes.

FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
# The registry and target/ are cache mounts (kept between builds, not in the image), so the
# binary is copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin nightshift \
    && install -m 0755 target/release/nightshift /usr/local/bin/nightshift

FROM debian:trixie-slim
RUN groupadd --system --gid 10001 nightshift \
    && useradd --system --uid 10001 --gid nightshift --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin nightshift \
    && mkdir /data && chown nightshift:nightshift /data && chmod 0700 /data
COPY --from=build /usr/local/bin/nightshift /usr/local/bin/nightshift
# Numeric, so that "run as non-root" checks can tell without reading /etc/passwd.
USER 10001:10001
# The working directory holds the default database (sqlite://nightshift.db → /data/nightshift.db),
# its key file (/data/nightshift.db.key: back it up with the database) and an optional
# /data/nightshift.toml.
WORKDIR /data
VOLUME /data
# Listen on every interface of the container (a flag, `-e NIGHTSHIFT_BIND` or `--bind` changes
# it; the variable wins over the settings file).
ENV NIGHTSHIFT_BIND=0.0.0.0:8080
EXPOSE 8080
# No HEALTHCHECK: the image has no HTTP client; probe GET /healthz from outside (no login).
ENTRYPOINT ["nightshift"]
CMD ["serve"]
