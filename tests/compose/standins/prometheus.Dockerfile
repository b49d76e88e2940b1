# Debian's prometheus; docker-compose.yml gives the flags.
ARG BASE
FROM ${BASE}
WORKDIR /prometheus
ENTRYPOINT ["prometheus"]
