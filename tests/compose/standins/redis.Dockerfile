# Debian's redis-server; docker-compose.yml gives the command.
ARG BASE
FROM ${BASE}
WORKDIR /data
