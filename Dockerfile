# Image of previewd itself (deploy/helm/previewd runs it).
#
#   docker build -t previewd .
#
# git is included: the git forge lists branches with it, and the local
# runtime checks code out with it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/previewd/previewd/internal/cli.Version=${VERSION}" -o /out/previewd ./cmd/previewd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown 65532:65532 /data
COPY --from=build /out/previewd /usr/local/bin/previewd
USER 65532:65532
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/previewd"]
CMD ["serve", "--config", "/etc/previewd/previewd.yaml"]
