# syntax=docker/dockerfile:1
# vulnledger server image.
#   docker build -t vulnledger .
#   docker run -e DATABASE_URL=... -e NATS_URL=... -e JWT_SECRET=... -p 8080:8080 vulnledger
# Migrations are embedded in the binary (sqlx::migrate!), `serve` applies them.

FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx query macros (if any) must use the checked-in .sqlx data, never a live DB.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vulnledger \
 && install -m 0755 target/release/vulnledger /usr/local/bin/vulnledger

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 vulnledger \
 && useradd --system --uid 10001 --gid vulnledger --no-create-home --shell /usr/sbin/nologin vulnledger
COPY --from=builder /usr/local/bin/vulnledger /usr/local/bin/vulnledger
USER vulnledger:vulnledger
ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/vulnledger"]
CMD ["serve"]
