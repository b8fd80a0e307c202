# jit-broker container image: build in the full Rust image, run in debian-slim as a non-root
# user. Build: `docker build -t jit-broker .`  Trial with Redis and PostgreSQL: docker-compose.yml.

# ---- build ----
FROM rust:1-slim-bookworm AS build
# Cargo features to build with: empty for production; `demo` adds `jit-broker demo` (the
# docker-compose demo), which links the Okta simulator.
ARG FEATURES=""
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: a dummy crate with the real
# manifests, built once, then the real sources.
COPY Cargo.toml Cargo.lock ./
COPY okta-sim/Cargo.toml okta-sim/Cargo.toml
RUN mkdir -p src okta-sim/src benches \
    && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > okta-sim/src/main.rs && echo '' > okta-sim/src/lib.rs \
    && echo 'fn main() {}' > benches/audit.rs \
    && mkdir -p tests/it && echo '' > tests/it/main.rs \
    && cargo build --release --locked --bin jit-broker --features "$FEATURES" \
    && rm -rf src okta-sim/src benches tests
COPY . .
# Touch the real sources so cargo does not trust the dummy build's timestamps.
RUN touch src/main.rs src/lib.rs \
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
