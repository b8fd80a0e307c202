# jit-broker container image: build in the full Rust image, run in debian-slim as a non-root
# user. Build: `docker build -t jit-broker .`  Trial with Redis and PostgreSQL: docker-compose.yml.
# CI has no container engine: .ci/docker-build-stage.py runs the plan stage and the build stage's
# steps up to its dependency build with the real toolchain, so a manifest the image cannot build fails CI.

# ---- plan: the workspace without its sources ----
FROM rust:1-slim-bookworm AS plan
WORKDIR /src
COPY . .
# Every manifest, Cargo.lock and a stub at each target's path as `cargo metadata` lists them: no
# target is named here, so one added to Cargo.toml is built like the others (docker/cargo-skeleton.sh).
RUN sh docker/cargo-skeleton.sh target/skeleton

# ---- build ----
FROM rust:1-slim-bookworm AS build
# Cargo features to build with: empty for production; `demo` adds `jit-broker demo` (the
# docker-compose demo), which links the Okta simulator.
ARG FEATURES=""
WORKDIR /src
# Dependencies first: the skeleton's content changes only with a manifest or the lock file, so a
# source change reuses this layer and its dependency build.
COPY --from=plan /src/target/skeleton/ ./
RUN cargo build --release --locked --bin jit-broker --features "$FEATURES"
COPY . .
# The real sources may be older than the stubs' build: touch them so cargo never keeps a stub.
RUN find . -name '*.rs' -not -path './target/*' -exec touch {} + \
    && cargo build --release --locked --bin jit-broker --features "$FEATURES" \
    && cp target/release/jit-broker /usr/local/bin/jit-broker

# ---- run ----
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/jit-broker --create-home jit
COPY --from=build /usr/local/bin/jit-broker /usr/local/bin/jit-broker
USER jit
WORKDIR /var/lib/jit-broker
# In a container the broker listens on every interface; the embedded SQLite file lives in the
# user's home (mount a volume there), unless JIT_DATABASE__URL points at PostgreSQL.
ENV JIT_SERVER__LISTEN=0.0.0.0:8080 \
    JIT_DATABASE__URL=sqlite:///var/lib/jit-broker/jit-broker.db \
    JIT_LOG__FORMAT=json
VOLUME ["/var/lib/jit-broker"]
EXPOSE 8080
# The image has no curl: the binary probes its own /healthz on the configured listen address.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["jit-broker", "healthcheck"]
ENTRYPOINT ["jit-broker"]
CMD ["serve"]
