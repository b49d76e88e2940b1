#!/usr/bin/env bash
# Installs what siesta needs to build and test on Debian 12, and nothing else. Idempotent.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates ccache
  prometheus-cpp-dev libcpp-httplib-dev nlohmann-json3-dev rapidjson-dev libspdlog-dev libcli11-dev
  libgtest-dev libgmock-dev libboost-dev libssl-dev libyaml-dev openssl
  libhowardhinnant-date-dev tzdata
  prometheus curl python3 procps clang-format clang libclang-rt-14-dev
  docker.io busybox-static cgroupfs-mount
  nginx redis-server docker-compose python3-yaml debootstrap wrk linux-perf
  nodejs python3-requests python3-websockets chromium
)
# The client matrix runs `npm ci` (tests/clients). NodeSource's nodejs ships npm itself and
# conflicts with Debian's npm package: add that one only when there is no npm yet.
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
