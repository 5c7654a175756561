# dbmaint in a container: built with cargo, run on Debian slim with the
# PostgreSQL client tools (pg_dump / pg_restore for `backup`), as a non-root
# user (uid 10001, what `dbmaint schedule export --format kubernetes`
# expects).
#
#   docker build -t dbmaint .
#   docker run --rm -e DATABASE_URL=postgres://… -v "$PWD/plans:/plans:ro" \
#     dbmaint plan diff /plans/django-nightly.yaml
#
# pg_dump must be of the server's major version or newer: Debian 12's
# postgresql-client is 15. For a newer server, install the client from the
# PostgreSQL project's apt repository instead (PG_CLIENT_PACKAGE below).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dbmaint

FROM debian:bookworm-slim
ARG PG_CLIENT_PACKAGE=postgresql-client
# Unpinned on purpose: the client tools take Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends "${PG_CLIENT_PACKAGE}" ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --create-home --home-dir /var/lib/dbmaint dbmaint \
 && install -d -o dbmaint -g dbmaint /var/log/dbmaint
COPY --from=build /src/target/release/dbmaint /usr/local/bin/dbmaint
USER 10001
WORKDIR /var/lib/dbmaint
ENV DBMAINT_LOG_DIR=/var/log/dbmaint
ENTRYPOINT ["dbmaint"]
CMD ["--help"]
