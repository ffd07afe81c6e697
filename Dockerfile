# Switchboard: one image with the broker, worker and client binaries.
# Build stage: Rust with Debian's libzmq (built with libsodium, so CURVE is available).
FROM rust:1-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
    && install -m 0755 target/release/broker target/release/worker target/release/client /usr/local/bin/

# Runtime stage: only the ZeroMQ runtime library and the binaries, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq5 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin switchboard
COPY --from=builder /usr/local/bin/broker /usr/local/bin/worker /usr/local/bin/client /usr/local/bin/
USER switchboard
# Exec form: the process is PID 1 and receives SIGTERM for a graceful stop.
ENTRYPOINT ["/usr/local/bin/broker"]
