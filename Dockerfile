# Builds the Keywarden manager image: `make docker-build IMG=...`.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /workspace

# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY cmd/ cmd/
COPY api/ api/
COPY internal/ internal/
COPY Makefile Makefile

# The same flags as the Makefile's GO_BUILD_FLAGS, with CGO off: a static
# binary that runs on distroless/static.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -ldflags=-s\ -w -o bin/manager ./cmd/manager

# No shell, no package manager; runs as the distroless nonroot user.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/bin/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
