#!/bin/sh
# Installs the Debian packages eddy needs to build, test and run, and only
# those that are missing: on a machine that has them all it does nothing, so
# `make test` and `make demo` can call it every time.
set -eu

packages="gcc make pkg-config
  lua5.4 liblua5.4-dev lua-busted
  libreadline-dev libzstd-dev zstd libxxhash-dev
  libjansson-dev libcsv-dev
  librocksdb-dev rocksdb-tools"

missing=""
for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=sudo; else
    echo "deps: missing packages:$missing (run as root or install them)" >&2
    exit 1
  fi
else
  sudo=""
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet; refresh once if an install fails.
# shellcheck disable=SC2086
$sudo apt-get install -y --no-install-recommends $missing \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends $missing; }
