# Multi-stage build of the logsentry binary. DuckDB is compiled from source
# (bundled), which takes ~20 minutes on 2 cores the first time.
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/logsentry

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data logsentry && mkdir -p /data && chown logsentry /data
COPY --from=build /src/target/release/logsentry /usr/local/bin/logsentry
COPY config/config.yaml /etc/logsentry/config.yaml
USER logsentry
WORKDIR /data
ENV LOGSENTRY_CONFIG=/etc/logsentry/config.yaml LOGSENTRY_DB=/data/logsentry.duckdb
EXPOSE 8080
ENTRYPOINT ["logsentry"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
