#!/usr/bin/env bash
# Parley beside etcd on this machine, in one run, with the same tool and concurrency:
#   1. a 3-member etcd cluster on loopback: 256-byte puts through its v3 JSON gateway
#      (wrk -t2 -c64, benches/peers/etcd_put.lua);
#   2. a 3-node Parley cluster on loopback: 256-byte messages
#      (wrk -t2 -c64, benches/peers/parley_send.lua, tokens from `parley bench tokens`),
#      then `parley bench send -c 64` against the same cluster for latencies and the
#      exactly-once check;
# and prints both figures and their ratio. Both are durable: etcd fsyncs its WAL before
# answering, Parley flushes its raft log on a quorum before applying and answering.
#
# Usage: benches/peers/etcd.sh           (env: DURATION=15 CONNS=64 THREADS=2 WARMUP=3
#                                          ETCD_PORT=23790 PARLEY_PORT=23900 PARLEY=path)
# Installs Debian's etcd-server, etcd-client and wrk with apt-get when missing. Everything it
# starts listens on 127.0.0.1 only, keeps its data in a temp dir, and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/peers/lib.sh

DURATION=${DURATION:-15}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3}
ETCD_PORT=${ETCD_PORT:-23790}
PARLEY_PORT=${PARLEY_PORT:-23900}

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null || ! command -v wrk >/dev/null; then
  apt-cache policy etcd-server etcd-client wrk || true
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client wrk curl
fi
bench_parley_bin

WORK=$(mktemp -d /tmp/parley-vs-etcd.XXXXXX)
ETCD_PIDS=()
cleanup() {
  local pid
  for pid in "${ETCD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${ETCD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ETCD_PIDS=()
  bench_stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wrk's summary as "requests/s p50_ms p99_ms non2xx".
wrk_summary() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ *50%/ { p50 = ms($2) }
    /^ *99%/ { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    /Socket errors:/ { bad += 0 }
    END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad }' "$1"
}

echo "== machine"
bench_machine
echo "etcd: $(etcd --version | head -1), wrk: $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"

echo "== etcd: 3 members on 127.0.0.1:$((ETCD_PORT + 1))-$((ETCD_PORT + 3))"
cluster=""
for i in 1 2 3; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((ETCD_PORT + 10 + i))"; done
for i in 1 2 3; do
  etcd --name "m$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$((ETCD_PORT + i))" \
    --advertise-client-urls "http://127.0.0.1:$((ETCD_PORT + i))" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10 + i))" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token parley-bench \
    --log-level error >"$WORK/etcd$i.log" 2>&1 &
  ETCD_PIDS+=($!)
done
for i in 1 2 3; do bench_wait_200 "http://127.0.0.1:$((ETCD_PORT + i))/health" 60; done
ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$((ETCD_PORT + 1))" endpoint status -w table 2>/dev/null || true
ETCD_URL="http://127.0.0.1:$((ETCD_PORT + 1))"
wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s benches/peers/etcd_put.lua "$ETCD_URL" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s benches/peers/etcd_put.lua "$ETCD_URL" | tee "$WORK/etcd.wrk"
read -r ETCD_RPS ETCD_P50 ETCD_P99 ETCD_BAD < <(wrk_summary "$WORK/etcd.wrk")
for pid in "${ETCD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${ETCD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
ETCD_PIDS=()

echo "== parley: 3 nodes on 127.0.0.1:$PARLEY_PORT-$((PARLEY_PORT + 2))"
bench_start_cluster "$WORK/parley" "$PARLEY_PORT"
TARGETS="http://127.0.0.1:$PARLEY_PORT,http://127.0.0.1:$((PARLEY_PORT + 1)),http://127.0.0.1:$((PARLEY_PORT + 2))"
P1="http://127.0.0.1:$PARLEY_PORT"
curl -s "$P1/v1/cluster"; echo
"$PARLEY" bench tokens --target "$P1" --users "$CONNS" --out "$WORK/tokens.tsv" --quiet
NONCE=$RANDOM$RANDOM
wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s benches/peers/parley_send.lua "$P1" -- "$WORK/tokens.tsv" "w$NONCE" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s benches/peers/parley_send.lua "$P1" -- "$WORK/tokens.tsv" "m$NONCE" \
  | tee "$WORK/parley.wrk"
read -r PARLEY_RPS PARLEY_P50 PARLEY_P99 PARLEY_BAD < <(wrk_summary "$WORK/parley.wrk")

echo "== parley bench send -c $CONNS (HTTP, senders on all three nodes; exactly-once check)"
"$PARLEY" bench send --target "$TARGETS" -c "$CONNS" --duration "$DURATION" --quiet ${BENCH_JSON:+--json "$BENCH_JSON"}

echo
echo "== result ($(date -u +%Y-%m-%d), wrk -t$THREADS -c$CONNS -d${DURATION}s, 256-byte values/bodies)"
printf '%-34s %10s %9s %9s %8s\n' "system" "ops/s" "p50 ms" "p99 ms" "non-2xx"
printf '%-34s %10s %9s %9s %8s\n' "etcd 3 members, v3 put" "$ETCD_RPS" "$ETCD_P50" "$ETCD_P99" "$ETCD_BAD"
printf '%-34s %10s %9s %9s %8s\n' "parley 3 nodes, send message" "$PARLEY_RPS" "$PARLEY_P50" "$PARLEY_P99" "$PARLEY_BAD"
awk -v p="$PARLEY_RPS" -v e="$ETCD_RPS" 'BEGIN { if (e > 0) printf "ratio parley/etcd: %.2fx (target >= 2x)\n", p / e }'
