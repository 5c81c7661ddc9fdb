#!/usr/bin/env bash
# Runs the measurements behind docs/BENCHMARKS.md against fresh local servers (a single node,
# then a 3-node cluster) and appends every result as a JSON line to $OUT; then
# `python3 scripts/plot.py` draws docs/plots/*.svg from it.
#
# Usage: scripts/bench_matrix.sh
#   env: OUT=docs/plots/results.jsonl  DURATION=10 (seconds per send/deliver run)
#        CONCURRENCY="1 4 16 64"  MODES="http ws"  TOPOLOGIES="single cluster"
#        SCENARIOS="send deliver catchup fanout connections"  PORT=24000  PARLEY=path
#        FANOUT_MEMBERS=5000 FANOUT_ONLINE=1000  CATCHUP=100000  CONNECTIONS=20000
# Everything listens on 127.0.0.1, every run is bounded, and the servers are stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/peers/lib.sh

OUT=${OUT:-docs/plots/results.jsonl}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-"1 4 16 64"}
MODES=${MODES:-"http ws"}
TOPOLOGIES=${TOPOLOGIES:-"single cluster"}
SCENARIOS=${SCENARIOS:-"send deliver catchup fanout connections"}
PORT=${PORT:-24000}
FANOUT_MEMBERS=${FANOUT_MEMBERS:-5000}
FANOUT_ONLINE=${FANOUT_ONLINE:-1000}
CATCHUP=${CATCHUP:-100000}
CONNECTIONS=${CONNECTIONS:-20000}

bench_parley_bin
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/parley-bench.XXXXXX)
trap 'bench_stop_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
bench() { echo "+ parley bench $*" >&2; "$PARLEY" bench "$@" --json "$OUT" --quiet; }

bench_machine
for topo in $TOPOLOGIES; do
  rm -rf "$WORK/$topo"
  if [[ $topo == single ]]; then
    bench_start_single "$WORK/$topo" "$PORT"
    T="http://127.0.0.1:$PORT"
  else
    bench_start_cluster "$WORK/$topo" "$((PORT + 10))"
    T="http://127.0.0.1:$((PORT + 10)),http://127.0.0.1:$((PORT + 11)),http://127.0.0.1:$((PORT + 12))"
  fi
  echo "== $topo: $T"
  if has send; then
    for mode in $MODES; do
      for c in $CONCURRENCY; do
        bench send --target "$T" -c "$c" --mode "$mode" --in-flight 8 --duration "$DURATION"
      done
    done
  fi
  if has deliver; then bench deliver --target "$T" --rate 1000 --duration "$DURATION"; fi
  if has catchup; then bench catchup --target "$T" --updates "$CATCHUP"; fi
  if has fanout; then bench fanout --target "$T" --members "$FANOUT_MEMBERS" --online "$FANOUT_ONLINE" --messages 20; fi
  bench_stop_all
  # Idle sockets on a fresh single node, so the RSS difference is the sockets' alone.
  if has connections && [[ $topo == single ]]; then
    rm -rf "$WORK/conn"
    bench_start_single "$WORK/conn" "$((PORT + 5))"
    bench connections --target "http://127.0.0.1:$((PORT + 5))" --connections "$CONNECTIONS"
    bench_stop_all
  fi
done
echo "results appended to $OUT; plots: python3 scripts/plot.py $OUT docs/plots"
