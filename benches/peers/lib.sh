# Shared helpers for the benchmark scripts (sourced, not run): start and stop local Parley
# nodes for a measurement. Every process started here is remembered in BENCH_PIDS and stopped
# by bench_stop_all (call it from an EXIT trap). Traffic stays on 127.0.0.1.

BENCH_PIDS=()

# The parley binary to measure: $PARLEY, else target/release/parley (built when missing).
bench_parley_bin() {
  PARLEY=${PARLEY:-$PWD/target/release/parley}
  if [[ ! -x $PARLEY ]]; then
    echo "building $PARLEY (cargo build --release) ..." >&2
    cargo build --release --bin parley >&2
  fi
}

# Waits until GET $1 answers 200 (at most $2 seconds, default 60).
bench_wait_200() {
  local url=$1 limit=${2:-60} i
  for ((i = 0; i < limit * 10; i++)); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "no 200 from $url within ${limit}s" >&2
  return 1
}

# bench_start_node DATA_DIR LOG PORT [serve flags...]: one `parley serve` on 127.0.0.1:PORT,
# its data in DATA_DIR, its stdout and stderr appended to LOG.out and LOG.log. Its pid is added
# to BENCH_PIDS and left in BENCH_PID. Does not wait for it to be ready.
bench_start_node() {
  local data=$1 log=$2 port=$3
  shift 3
  (ulimit -n 65536 2>/dev/null || true
   exec "$PARLEY" serve --data-dir "$data" --http "127.0.0.1:$port" --admin-token bench \
     --rate-limit-per-user 0 --max-conns-per-ip 0 "$@" >>"$log.out" 2>>"$log.log") &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
}

# bench_start_single DIR PORT [serve flags...]: one node at http://127.0.0.1:PORT.
bench_start_single() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  bench_start_node "$dir/single" "$dir/single" "$port" "$@"
  bench_wait_200 "http://127.0.0.1:$port/readyz"
}

# The --peers list of nodes 1..$2 at BASE_PORT ($1) .. BASE_PORT+N-1.
bench_peers() {
  local base=$1 n=$2 i peers=""
  for ((i = 1; i <= n; i++)); do peers+="${peers:+,}$i=127.0.0.1:$((base + i - 1))"; done
  echo "$peers"
}

# bench_start_cluster DIR BASE_PORT [serve flags...]: three nodes at BASE_PORT..BASE_PORT+2
# (data in DIR/node<i>, cluster secret `bench-cluster-secret`, admin token `bench`).
bench_start_cluster() {
  local dir=$1 base=$2 i peers
  shift 2
  mkdir -p "$dir"
  peers=$(bench_peers "$base" 3)
  for i in 1 2 3; do
    bench_start_node "$dir/node$i" "$dir/node$i" "$((base + i - 1))" --node-id "$i" --peers "$peers" \
      --cluster-secret bench-cluster-secret "$@"
  done
  for i in 1 2 3; do bench_wait_200 "http://127.0.0.1:$((base + i - 1))/readyz" 90; done
}

# Waits for PID (started by these helpers) to exit: 10 s after a SIGTERM, then SIGKILL.
bench_await_exit() {
  local pid=$1 i
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops one process started by these helpers (SIGTERM, SIGKILL after 10 s) and forgets it.
bench_stop_pid() {
  local pid=$1 p kept=()
  kill -TERM "$pid" 2>/dev/null || true
  bench_await_exit "$pid"
  for p in "${BENCH_PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  BENCH_PIDS=("${kept[@]}")
}

# Stops every process started by these helpers (SIGTERM, then SIGKILL after 10 s).
bench_stop_all() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do bench_await_exit "$pid"; done
  BENCH_PIDS=()
}

# The machine, for the record.
bench_machine() {
  echo "cores: $(nproc), memory: $(free -h | awk '/^Mem:/ {print $2}'), kernel: $(uname -r)"
  echo "disk: $(df -h "$PWD" | awk 'NR == 2 {print $1 ", " $2 " total, " $4 " free"}')"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
}
