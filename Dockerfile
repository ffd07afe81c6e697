# Switchboard: one image with the broker, worker and client binaries.
#
# Stages, in this order so that the classic builder (which builds every stage before the
# one asked for) can stop early:
#   runtime-base  the base image with the ZeroMQ runtime library and user 10001
#   builder       Rust with Debian's libzmq (built with libsodium: CURVE is available)
#   runtime       runtime-base plus the stripped binaries from the builder (the default)
#
#   docker build -t switchboard .                           the usual multi-stage build
#   docker build --target runtime-base -t switchboard-runtime-base .
#                                                           only the base, to which a test adds
#                                                           host-built binaries (scripts/compose_e2e.py)
# Both base images are build arguments (a machine with no registry makes its own Debian with
# scripts/docker_base.sh).
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${BASE_IMAGE} AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq5 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin switchboard
# Numeric, so that orchestrators can check it is not root without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/broker"]

FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
    && strip target/release/broker target/release/worker target/release/client \
    && install -m 0755 target/release/broker target/release/worker target/release/client /usr/local/bin/

FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/broker /usr/local/bin/worker /usr/local/bin/client /usr/local/bin/
# Exec form: the process is PID 1 and receives SIGTERM for a graceful stop.
ENTRYPOINT ["/usr/local/bin/broker"]
