# syntax=docker/dockerfile:1
# The chat server as a small container image:
#
#   docker build -t chatd .
#   docker run -p 3000:3000 chatd                      # embedded SQLite store
#   docker run -p 3000:3000 -e DATABASE_URL=postgres://... chatd
#
# docker-compose.yml runs two of these (primary on 3000, backup on 3001)
# with PostgreSQL and nginx in front, as in the report.

# Build stage. Same Go minor version as go.mod's `go` line; the official image
# sets GOTOOLCHAIN=local, so it must be at least that version (the 1.26 tag
# follows the newest 1.26.x release).
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, in their own layer: rebuilt only when go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=0: a static binary that runs on any base image. Nothing needs
# cgo: the SQLite driver (modernc.org/sqlite) and lib/pq are pure Go.
# -trimpath -ldflags='-s -w': no local paths, no symbol tables (smaller).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/chatd .

# Final stage: Alpine rather than distroless so that the image has a shell
# and busybox wget for HEALTHCHECK (distroless/static has neither). It also
# has the CA bundle, for DATABASE_URLs with sslmode=require/verify-full.
FROM alpine:3.22
# A fixed, unprivileged user; /data is its working directory, where the
# embedded SQLite store (used when DATABASE_URL is empty) keeps chat.db.
RUN addgroup -S -g 10001 chatd \
 && adduser -S -D -H -u 10001 -G chatd -h /data chatd \
 && mkdir /data && chown chatd:chatd /data
COPY --from=build /out/chatd /usr/local/bin/chatd
WORKDIR /data
# Keep the SQLite store across containers with `-v chatd-data:/data`; with
# DATABASE_URL set (as in docker-compose.yml) nothing is written here.
ENV PORT=3000 \
    SQLITE_PATH=/data/chat.db
# 3000 by default; the backup service sets PORT=3001 (compose publishes
# nothing from here: nginx reaches both over the compose network).
EXPOSE 3000
USER 10001:10001
# /readyz answers 200 when the store is reachable and 503 otherwise, so
# `docker ps` shows whether each server can actually serve chats. (Docker
# does not restart unhealthy containers; it only reports them, and compose
# waits for the primary's health before starting nginx.) --start-interval
# (Docker 25+, ignored by older engines) checks every second while starting,
# so that wait is short.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --start-interval=1s --retries=3 \
    CMD wget -q -O /dev/null "http://127.0.0.1:${PORT}/readyz" || exit 1
# Exec form: chatd is PID 1 and gets SIGTERM from `docker stop`, which it
# handles with a graceful shutdown (sockets closed, then HTTP drained).
ENTRYPOINT ["/usr/local/bin/chatd"]
