# The scuttlebutt agent as a container image: nothing but the static binary.
#
#   make image          # CGO_ENABLED=0 go build -o build/scuttlebutt ./scuttlebutt, then docker build
#   docker run --rm scuttlebutt:latest agent -join 10.0.0.7:8119
#
# No base image is pulled, not even to build: the binary is built with the
# local Go toolchain first (.dockerignore sends only build/scuttlebutt).
FROM scratch
COPY build/scuttlebutt /scuttlebutt
# nobody:nogroup; -docker needs read access to the Docker socket (see
# docs/daemon.md, "In a container").
USER 65534:65534
# Gossip (UDP and TCP) and the HTTP API / web page.
EXPOSE 8119/udp 8119/tcp 7777/tcp
# In a container the API listens on every interface, so that a published
# port reaches it; writes then need SCUTTLEBUTT_TOKEN (reads do not).
ENV SCUTTLEBUTT_HTTP=0.0.0.0:7777
ENTRYPOINT ["/scuttlebutt"]
CMD ["agent"]
