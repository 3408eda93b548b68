# Build: docker build -t nightshift .   Run: docker run -p 8080:8080 -v nightshift:/data nightshift
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin nightshift

FROM debian:bookworm-slim
RUN useradd --system --home /data nightshift && mkdir -p /data && chown nightshift /data
COPY --from=build /src/target/release/nightshift /usr/local/bin/nightshift
USER nightshift
WORKDIR /data
ENV NIGHTSHIFT_BIND=0.0.0.0:8080 \
    NIGHTSHIFT_DATABASE_URL=sqlite:///data/nightshift.db?mode=rwc
EXPOSE 8080
ENTRYPOINT ["nightshift"]
CMD ["serve"]
