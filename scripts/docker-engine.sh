#!/usr/bin/env bash
# A private Docker engine for siesta's tests, on loopback only (no bridge, no iptables), with
# the test image siesta-test/busybox:1 built from Debian's busybox-static (no registry needed).
#   scripts/docker-engine.sh start [ROOT]   start (or reuse) the engine under ROOT
#   scripts/docker-engine.sh stop [ROOT]    stop it; containers stop with it
# ROOT defaults to /tmp/siesta-docker; the socket is ROOT/docker.sock, so
#   export DOCKER_HOST=unix:///tmp/siesta-docker/docker.sock
# points the docker CLI and siesta at it. Needs root and Debian's docker.io and busybox-static.
set -euo pipefail
cmd=${1:?usage: docker-engine.sh start|stop [ROOT]}
root=${2:-/tmp/siesta-docker}
sock="$root/docker.sock"
export DOCKER_HOST="unix://$sock"
docker_cli=/usr/bin/docker; [ -x "$docker_cli" ] || docker_cli=docker

alive() { [ -f "$root/docker.pid" ] && kill -0 "$(cat "$root/docker.pid")" 2>/dev/null; }

case "$cmd" in
  start)
    mkdir -p "$root"
    if ! alive; then
      # Containers need the cgroup hierarchies mounted; cgroupfs-mount only adds missing ones.
      if command -v cgroupfs-mount >/dev/null; then cgroupfs-mount; fi
      rm -f "$sock"
      setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        --data-root "$root/data" --exec-root "$root/exec" --pidfile "$root/docker.pid" \
        -H "unix://$sock" >"$root/dockerd.log" 2>&1 < /dev/null &
    fi
    for _ in $(seq 1 300); do
      "$docker_cli" version >/dev/null 2>&1 && break
      sleep 0.1
    done
    if ! "$docker_cli" version >/dev/null 2>&1; then
      echo "docker-engine.sh: the engine did not come up; its log:" >&2
      tail -n 30 "$root/dockerd.log" >&2
      exit 1
    fi
    if ! "$docker_cli" image inspect siesta-test/busybox:1 >/dev/null 2>&1; then
      image=$(mktemp -d)
      mkdir -p "$image/bin" "$image/www" "$image/tmp"
      cp /bin/busybox "$image/bin/busybox"
      for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$image/bin/$applet"
      done
      echo ok > "$image/www/index.html"
      tar -C "$image" -c . | "$docker_cli" import -c 'ENV PATH=/bin' - siesta-test/busybox:1 >/dev/null
      rm -rf "$image"
    fi
    echo "Docker engine ready: DOCKER_HOST=$DOCKER_HOST"
    ;;
  stop)
    if alive; then
      pid=$(cat "$root/docker.pid")
      kill "$pid"
      for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    ;;
  *)
    echo "usage: docker-engine.sh start|stop [ROOT]" >&2
    exit 2
    ;;
esac
