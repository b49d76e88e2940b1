# The Docker socket proxy: Debian's haproxy where docker-compose.yml runs the official haproxy
# image; both read deploy/docker-socket-proxy.cfg, mounted by docker-compose.yml.
ARG BASE
FROM ${BASE}
ENTRYPOINT ["haproxy", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
