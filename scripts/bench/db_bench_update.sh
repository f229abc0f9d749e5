#!/bin/sh
# Baseline of keyed_count on rocksdb: RocksDB's own db_bench doing the same
# read-modify-write of one key per operation (updaterandom), with keys and
# values the size of eddy's row keys and encoded {count, total} values, the
# same number of keys, the WAL off and no compression, in a fresh folder.
# Prints records_per_second=N (its ops/sec) for scripts/bench/run.lua.
#   scripts/bench/db_bench_update.sh [operations] [keys]
set -eu
ops=${1:-1000000}
keys=${2:-100000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/eddy-db-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
out=$(db_bench --benchmarks=fillseq,updaterandom --num="$keys" --reads="$ops" \
  --key_size=16 --value_size=16 --disable_wal=1 --compression_type=none \
  --threads=1 --db="$dir/db" 2>&1)
rate=$(printf '%s\n' "$out" | sed -n 's/^updaterandom *:.* \([0-9][0-9]*\) ops\/sec.*/\1/p')
if [ -z "$rate" ]; then
  printf '%s\n' "$out" >&2
  exit 1
fi
echo "db_bench updaterandom: $ops operations over $keys keys, records_per_second=$rate"
