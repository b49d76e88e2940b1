# siesta as the test runs it: the binary the build just made, on the Debian base (the repo's
# Dockerfile builds it from source the same way, but apt cannot reach a registry's image here).
ARG BASE
FROM ${BASE}
COPY siesta /usr/local/bin/siesta
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/siesta"]
