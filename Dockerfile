# mw-auth-proxy container image.
#
#   docker build -t mw-auth-proxy .
#
# Build stage: the release binary. Dependencies are compiled in a layer of
# their own, from Cargo.toml and Cargo.lock alone, so that a change to the
# sources rebuilds only the proxy itself.
FROM rust:1-bookworm AS build
WORKDIR /src

# 1. Dependencies: build the real manifest against placeholder sources (the
#    package has a library, src/lib.rs, and a binary, src/main.rs).
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

# 2. The proxy: the real sources. COPY keeps the files' own modification
#    times, which may be older than the placeholder build; touch them so that
#    cargo rebuilds the library and the binary instead of reusing the
#    placeholders.
COPY src ./src
RUN touch src/lib.rs src/main.rs \
 && cargo build --release --locked

# Runtime stage: glibc, libgcc and CA certificates, no shell, no package
# manager. The "nonroot" user of distroless images is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12 AS runtime

COPY --from=build /src/target/release/mw-auth-proxy /usr/local/bin/mw-auth-proxy

# Mount the configuration here (read-only); the bot password goes in a
# secret file named by login.password_file, e.g. /run/secrets/mw_bot_password.
ENV MW_AUTH_PROXY_CONFIG=/etc/mw-auth-proxy/config.toml

# A numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532

# The port of the example configuration (server.listen = "127.0.0.1:8080").
# The proxy is meant to stay on loopback and share its network namespace with
# the one container that uses it: see "Running it in a container" in the
# README.
EXPOSE 8080

# SIGTERM: stop accepting, let in-flight requests finish (up to
# server.shutdown_grace_secs, 10 s by default), exit 0.
STOPSIGNAL SIGTERM

# Healthy = logged in to the wiki (GET /readyz at server.listen, read from
# the same configuration). A wrong password or an unreachable wiki makes the
# container unhealthy while the proxy keeps retrying the login by itself.
# The check is cheap (one loopback request); a short interval lets a bot
# that waits for `service_healthy` start soon after the login.
HEALTHCHECK --interval=10s --timeout=8s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/mw-auth-proxy", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/mw-auth-proxy"]
