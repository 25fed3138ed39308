#!/usr/bin/env bash
# Builds the images the docker examples and tests use, from local binaries only (this
# machine reaches no registry): replicheck-demo:local (the demo service: this project's
# binary) and replicheck-redis:local (Debian's redis-server). Each is FROM scratch with the
# binary and the shared libraries `ldd` lists. A real project uses its own image and
# `redis:7` from a registry instead.
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

# Quiet unless it fails: the engine's legacy builder prints a notice on every build.
build() {
  local out
  if ! out=$(docker build --quiet "$@" 2>&1); then echo "$out" >&2; exit 1; fi
}

pack "$work/demo" "$bin" /replicheck
cp examples/docker/Dockerfile.demo "$work/demo/Dockerfile"
build --label replicheck.image=demo -t replicheck-demo:local "$work/demo"

pack "$work/redis" "$redis" /usr/local/bin/redis-server
cp examples/docker/Dockerfile.redis "$work/redis/Dockerfile"
build --label replicheck.image=redis -t replicheck-redis:local "$work/redis"

echo "built replicheck-demo:local and replicheck-redis:local"
