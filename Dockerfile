# hoard's container image: a static binary on an empty image, run as the
# unprivileged user hoard (uid/gid 999). The build stage runs
# scripts/image-build.sh, which also runs (and is tested) outside Docker.
#
#   docker build -t hoard --build-arg VERSION=$(git describe --tags --always) .
#   docker run --rm hoard --help
#
# The default command is `hoard daemon`; configure it with HOARD_* and PG*
# variables (docs/configuration.md) or mount a file and pass --config. The
# image has no shell and no curl, so there is no HEALTHCHECK: probe
# GET /healthz on the HTTP port from outside (docs/kubernetes.md).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN VERSION=$VERSION bash scripts/image-build.sh /rootfs

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=999:999 /rootfs/var/lib/hoard /var/lib/hoard
ENV PATH=/usr/local/bin
USER 999:999
WORKDIR /var/lib/hoard
VOLUME /var/lib/hoard
EXPOSE 16000
ENTRYPOINT ["hoard"]
CMD ["daemon"]
