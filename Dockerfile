# syntax=docker/dockerfile:1
# kterm's container image: built from source in a Rust image, run from debian:bookworm-slim
# with only what kterm needs, as a non-root user (10001), state in the volume /var/lib/kterm.
#
#   docker build --build-arg KTERM_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t kterm .
#
# See README, "Run it in a container", for running it (and what mounting the Docker socket
# gives it).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY assets/dist ./assets/dist
COPY benches ./benches
# No .git in the build context: the commit for `kterm --version` comes from here.
ARG KTERM_GIT_COMMIT=unknown
ENV KTERM_GIT_COMMIT=${KTERM_GIT_COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kterm \
    && install -m 0755 target/release/kterm /usr/local/bin/kterm

FROM debian:bookworm-slim
# ca-certificates: TLS to a Kubernetes API server or a registry; tini: PID 1 that reaps the
# orphans of the local backend's shells. (bash for those shells is in the base already.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 kterm \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/kterm --no-create-home \
       --shell /usr/sbin/nologin kterm \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/kterm
COPY --from=build /usr/local/bin/kterm /usr/local/bin/kterm
# Listen on every interface of the container (so auth.mode must be set: kterm refuses "none"
# off loopback); keep the state in the volume.
ENV KTERM_SERVER__LISTEN=0.0.0.0:8080 \
    KTERM_STATE__PATH=/var/lib/kterm/kterm.db \
    HOME=/var/lib/kterm
USER 10001:10001
WORKDIR /var/lib/kterm
VOLUME ["/var/lib/kterm"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["kterm", "healthcheck"]
ENTRYPOINT ["tini", "--", "kterm"]
