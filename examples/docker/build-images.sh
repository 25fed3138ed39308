#!/usr/bin/env bash
# Builds the images the docker examples and tests use, from local binaries only (this
# machine reaches no registry): replicheck-demo:local (the demo service: this project's
# binary), replicheck-redis:local (Debian's redis-server) and replicheck-postgres:local
# (Debian's PostgreSQL, when it is installed). Each is FROM scratch with the binaries and
# the shared libraries `ldd` lists. A real project uses its own image, and `redis:7` and
# `postgres:16` from a registry, instead.
#
#   examples/docker/build-images.sh
#
# REPLICHECK_BIN names an already built binary to pack instead of building one (the tests
# pass the binary under test).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${REPLICHECK_BIN:-}
if [ -z "$bin" ]; then
  cargo build --quiet --bin replicheck
  bin=target/debug/replicheck
fi
redis=$(command -v redis-server) || { echo "redis-server is not installed: apt-get install redis-server" >&2; exit 1; }

# Copies a binary and every library it loads (with the dynamic loader) into $1.
pack() {
  local root=$1 binary=$2 into=$3
  mkdir -p "$root$(dirname "$into")" "$root/tmp" "$root/data"
  cp "$binary" "$root$into"
  ldd "$binary" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What an image is built from, as one word: each input's path, size and modification time.
stamp() {
  stat -L -c '%n %s %Y' "$@" | md5sum | cut -c1-16
}

# Whether the engine has image $1 built from stamp $2 already: the tests call this script
# once per test process, and most find nothing to do.
current() {
  [ "$(docker image inspect -f '{{index .Config.Labels "replicheck.stamp"}}' "$1" 2>/dev/null)" = "$2" ]
}

# Builds image $1 from directory $2, labelled with its role $3 and stamp $4. Quiet unless
# it fails: the engine's legacy builder prints a notice on every build.
build() {
  local out
  if ! out=$(docker build --quiet --label "replicheck.image=$3" --label "replicheck.stamp=$4" -t "$1" "$2" 2>&1); then
    echo "$out" >&2
    exit 1
  fi
}

demo_stamp=$(stamp "$bin" examples/docker/Dockerfile.demo)
if ! current replicheck-demo:local "$demo_stamp"; then
  pack "$work/demo" "$bin" /replicheck
  cp examples/docker/Dockerfile.demo "$work/demo/Dockerfile"
  build replicheck-demo:local "$work/demo" demo "$demo_stamp"
fi

redis_stamp=$(stamp "$redis" examples/docker/Dockerfile.redis)
if ! current replicheck-redis:local "$redis_stamp"; then
  pack "$work/redis" "$redis" /usr/local/bin/redis-server
  cp examples/docker/Dockerfile.redis "$work/redis/Dockerfile"
  build replicheck-redis:local "$work/redis" redis "$redis_stamp"
fi

# PostgreSQL: the server and the tools a run uses (initdb, pg_isready, psql), its modules
# and data files where the binaries look for them, dash as /bin/sh for the entrypoint, and
# the postgres account owning the data and socket directories.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pg_bin" ]; then
  echo "ready: replicheck-demo:local and replicheck-redis:local (PostgreSQL is not installed: no replicheck-postgres:local)"
  exit 0
fi
pg=$(dirname "$pg_bin")
pg_share=/usr/share/postgresql/$(basename "$pg")
pg_stamp=$(stamp "$pg_bin/postgres" examples/docker/Dockerfile.postgres examples/docker/postgres-entrypoint.sh)
if ! current replicheck-postgres:local "$pg_stamp"; then
  root=$work/postgres/root
  for tool in postgres initdb pg_isready psql; do
    pack "$root" "$pg_bin/$tool" "$pg_bin/$tool"
    mkdir -p "$root/usr/local/bin"
    ln -s "$pg_bin/$tool" "$root/usr/local/bin/$tool"
  done
  pack "$root" "$(readlink -f /bin/sh)" /bin/sh
  mkdir -p "$root$pg/lib" "$root$(dirname "$pg_share")"
  # Without LLVM: the JIT is optional and its library alone is larger than the rest.
  find "$pg/lib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' -exec cp {} "$root$pg/lib/" \;
  cp -r "$pg_share" "$root$pg_share"
  cp -r /usr/share/zoneinfo "$root/usr/share/zoneinfo"
  mkdir -p "$root/etc"
  echo "postgres:x:999:999::/var/lib/postgresql:/bin/sh" > "$root/etc/passwd"
  echo "postgres:x:999:" > "$root/etc/group"
  cp examples/docker/postgres-entrypoint.sh "$root/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$work/postgres/owned/var/lib/postgresql" "$work/postgres/owned/var/run/postgresql" "$work/postgres/owned/tmp"
  chmod 1777 "$work/postgres/owned/tmp"
  cp examples/docker/Dockerfile.postgres "$work/postgres/Dockerfile"
  build replicheck-postgres:local "$work/postgres" postgres "$pg_stamp"
fi

echo "ready: replicheck-demo:local, replicheck-redis:local and replicheck-postgres:local"
