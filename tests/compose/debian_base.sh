#!/usr/bin/env bash
# The Debian 12 base image of the compose test's stand-ins, for an engine that cannot pull
# images: `debootstrap --variant=minbase` with the Debian packages the stand-ins run, imported
# with `docker import`. Prints the image's name.
# Cached twice: the root file system as a tarball under $SIESTA_CACHE (default
# /var/cache/siesta), and the image in the engine; both are named after the package list, so
# changing it builds a new one. The mirror is the machine's own (/etc/apt/sources.list or
# sources.list.d), else deb.debian.org.
set -euo pipefail
# The stand-ins' programs, and siesta's runtime libraries (as the Dockerfile's final stage).
packages="python3,prometheus,redis-server,haproxy,libprometheus-cpp-core1.0,libcpp-httplib0.11,libspdlog1.10,libfmt9,libssl3,libyaml-0-2,libdate-tz3,tzdata"
key=$(printf '%s' "$packages" | sha256sum | cut -c1-12)
image="siesta-stack/debian:12-$key"
if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi

cache=${SIESTA_CACHE:-/var/cache/siesta}
tarball="$cache/debian12-stack-$key.tar"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (scripts/install-deps.sh)" >&2; exit 1; }
  mirror=$(python3 - <<'PY'
import glob, re
uris = []
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(path):
            f = re.sub(r"\[[^]]*\]", "", line).split()  # without [options]
            if len(f) >= 3 and f[0] == "deb" and f[2] == "bookworm":
                uris.append(f[1])
    except OSError:
        pass
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for block in open(path).read().split("\n\n"):
        fields = dict(re.findall(r"^(\w+):\s*(.*)$", block, re.M))
        if "bookworm" in fields.get("Suites", "").split() and "deb" in fields.get("Types", "deb"):
            uris.extend(fields.get("URIs", "").split())
print(uris[0] if uris else "http://deb.debian.org/debian")
PY
)
  mkdir -p "$cache"
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root" "$tarball.tmp"' EXIT
  # dpkg without fsync: a throw-away root file system needs no crash safety, and it is most of
  # debootstrap's time.
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/siesta-unsafe-io"
  echo "debootstrap bookworm from $mirror (minbase + $packages)..." >&2
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # Half of it is Prometheus's web UI libraries (/usr/share/javascript); the test uses its API.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/javascript "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
  # siesta's state directory, owned by the user its image runs as (as the Dockerfile does).
  mkdir -p "$root/var/lib/siesta" "$root/prometheus" "$root/data"
  chown 65534:65534 "$root/var/lib/siesta" "$root/prometheus"
  tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tarball" "$image" >/dev/null
echo "$image"
