#!/usr/bin/env bash
# How long a cluster node takes to catch up with a long history, and what it costs in memory:
#   1. a 3-node cluster of real `parley serve` processes on 127.0.0.1, fresh data dirs;
#   2. node 3 is stopped (SIGTERM); `parley bench history` fills N messages into the leader;
#   3. node 3 is restarted: time until its /v1/cluster `cursor` and `last_applied` equal the
#      leader's, its peak RSS (VmRSS sampled every 100 ms), entries/s = cursors caught up / s;
#   4. a new node 4 (`serve --join`, empty data dir) is added as a learner with
#      `parley members add`: the same figures, from the moment it is added;
#   5. /v1/admin/digest and the head hash of /v1/admin/journal/verify must be the same on all
#      four nodes, else the script fails.
# Prints the fill's rows, then a markdown table. Every process it starts is stopped on exit.
#
# Usage: benches/cluster_catchup.sh [--messages N] [--snapshot-every K] [--bin PATH]
#          [--concurrency C] [--base-port P] [--timeout SECONDS] [--keep]
#   --messages N        messages filled while node 3 is down (default 1000000)
#   --snapshot-every K  passed to every node's `parley serve` (default: the server's)
#   --bin PATH          the parley binary (default target/release/parley, built if missing)
#   --concurrency C     senders of the fill (default 64)
#   --base-port P       nodes listen on P..P+3 (default: four free ports found at start)
#   --timeout SECONDS   longest a catch-up may take before the script fails (default 3600)
#   --keep              keep the work dir (data dirs, logs, the fill's JSON line); it is also
#                       kept when the script fails
# Traffic stays on 127.0.0.1; the fill is bounded by N and the client's request timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/peers/lib.sh

MESSAGES=1000000
SNAPSHOT_EVERY=""
PARLEY=""
CONCURRENCY=64
BASE_PORT=""
TIMEOUT=3600
KEEP=0
while (($#)); do
  case $1 in
    --messages) MESSAGES=$2; shift 2 ;;
    --snapshot-every) SNAPSHOT_EVERY=$2; shift 2 ;;
    --bin) PARLEY=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --base-port) BASE_PORT=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n $PARLEY ]] && PARLEY=$(realpath "$PARLEY")
bench_parley_bin
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done

SECRET=bench-cluster-secret
ADMIN=bench # the admin token bench_start_node gives every node
SERVE_EXTRA=(--cluster-secret "$SECRET")
[[ -n $SNAPSHOT_EVERY ]] && SERVE_EXTRA+=(--snapshot-every "$SNAPSHOT_EVERY")

WORK=$(mktemp -d /tmp/parley-catchup.XXXXXX)
OK=0
MEMBERS_PID=""
cleanup() {
  [[ -n $MEMBERS_PID ]] && kill "$MEMBERS_PID" 2>/dev/null || true
  bench_stop_all
  if ((OK && !KEEP)); then rm -rf "$WORK"; else echo "work dir kept: $WORK (data dirs, node*.log)" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four free ports (the kernel's choice; closed again at once, so a tiny race is possible).
if [[ -z $BASE_PORT ]]; then
  read -r -a PORTS < <(python3 -c '
import socket
for _ in range(100):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p + 3 > 65535: continue
    try:
        held = []
        for q in range(p, p + 4):
            t = socket.socket(); t.bind(("127.0.0.1", q)); held.append(t)
        print(*range(p, p + 4)); break
    except OSError: pass
    finally:
        for t in held: t.close()
')
  [[ ${#PORTS[@]} == 4 ]] || { echo "found no four free consecutive ports" >&2; exit 1; }
  BASE_PORT=${PORTS[0]}
fi
url() { echo "http://127.0.0.1:$((BASE_PORT + $1 - 1))"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.3f}')"; }

# A JSON field of a compact body: a number, or a string's contents (the bodies read here are
# flat where it matters, and bash does this without a process per 100 ms sample).
field() {
  local body=$1 key=$2
  if [[ $body =~ \"$key\":\"([^\"]*)\" ]] || [[ $body =~ \"$key\":([0-9]+) ]]; then
    echo "${BASH_REMATCH[1]}"
  fi
}
cluster_of() { curl -s --max-time 2 "$(url "$1")/v1/cluster" 2>/dev/null || true; }
admin_get() { curl -s --max-time 900 -H "Authorization: Bearer $ADMIN" "$(url "$1")$2"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
dir_mib() { du -sm --apparent-size "$1" 2>/dev/null | cut -f1; }

# The leader's id as node $1 sees it (empty while there is none).
leader_seen_by() { field "$(cluster_of "$1")" leader_id; }

# catch_up NODE PID FROM_CURSOR LABEL: polls NODE every 100 ms until its cursor and
# last_applied equal the leader's; appends a table row; fails after $TIMEOUT s.
ROWS=()
catch_up() {
  local node=$1 pid=$2 from=$3 label=$4 started peak=0 rss body lead cur app lcur lapp secs
  started=$(now)
  while :; do
    rss=$(rss_kb "$pid")
    ((rss > peak)) && peak=$rss
    body=$(cluster_of "$node")
    lead=$(cluster_of "$LEADER")
    cur=$(field "$body" cursor) app=$(field "$body" last_applied)
    lcur=$(field "$lead" cursor) lapp=$(field "$lead" last_applied)
    if [[ -n $cur && -n $lcur && $cur == "$lcur" && $app == "$lapp" ]]; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "node $node exited during its catch-up" >&2; exit 1; fi
    if (($(date +%s) - ${started%.*} > TIMEOUT)); then
      echo "node $node not caught up after ${TIMEOUT}s (cursor ${cur:-?}/${lcur:-?})" >&2
      exit 1
    fi
    sleep 0.1
  done
  secs=$(elapsed "$started")
  local entries=$((lcur - from))
  local rate
  rate=$(python3 -c "print(f'{$entries / max($secs, 1e-9):,.0f}')")
  echo "node $node caught up: cursor $from -> $lcur (last_applied $lapp) in ${secs}s, peak RSS $((peak / 1024)) MiB" >&2
  ROWS+=("| $label | $from | $lcur | $entries | $secs | $rate | $((peak / 1024)) | $(dir_mib "$WORK/node$node") |")
}

echo "== 3 nodes on $(url 1), $(url 2), $(url 3); work dir $WORK" >&2
bench_machine >&2
PEERS=$(bench_peers "$BASE_PORT" 3)
declare -A PID
for i in 1 2 3; do
  bench_start_node "$WORK/node$i" "$WORK/node$i" "$((BASE_PORT + i - 1))" --node-id "$i" --peers "$PEERS" \
    "${SERVE_EXTRA[@]}"
  PID[$i]=$BENCH_PID
done
for i in 1 2 3; do bench_wait_200 "$(url "$i")/readyz" 90; done

# Node 3 goes down; the fill goes to whoever leads among nodes 1 and 2.
C3=$(field "$(cluster_of 3)" cursor)
bench_stop_pid "${PID[3]}"
LEADER_ID=""
for ((i = 0; i < 300; i++)); do
  LEADER_ID=$(leader_seen_by 1)
  [[ $LEADER_ID == 1 || $LEADER_ID == 2 ]] && [[ $(leader_seen_by 2) == "$LEADER_ID" ]] && break
  LEADER_ID=""
  sleep 0.1
done
[[ -n $LEADER_ID ]] || { echo "no leader among nodes 1 and 2 within 30 s" >&2; exit 1; }
LEADER=$LEADER_ID
echo "== node 3 stopped at cursor $C3; filling $MESSAGES messages into node $LEADER (the leader)" >&2
"$PARLEY" bench history --target "$(url "$LEADER")" --messages "$MESSAGES" --concurrency "$CONCURRENCY" \
  --data-dir "$WORK/node$LEADER" --json "$WORK/history.jsonl" --quiet
# Node 3's cursor is what its data dir held when it stopped (it applied nothing since).
LCUR=$(field "$(cluster_of "$LEADER")" cursor)
echo "== leader at cursor $LCUR; restarting node 3" >&2

bench_start_node "$WORK/node3" "$WORK/node3" "$((BASE_PORT + 2))" --node-id 3 --peers "$PEERS" "${SERVE_EXTRA[@]}"
PID[3]=$BENCH_PID
catch_up 3 "${PID[3]}" "$C3" "node 3, restarted after missing the fill"

echo "== node 4: serve --join, then parley members add (learner)" >&2
bench_start_node "$WORK/node4" "$WORK/node4" "$((BASE_PORT + 3))" --node-id 4 --join "${SERVE_EXTRA[@]}"
PID[4]=$BENCH_PID
for ((i = 0; i < 600; i++)); do [[ -n $(cluster_of 4) ]] && break; sleep 0.1; done
[[ -n $(cluster_of 4) ]] || { echo "node 4 did not answer /v1/cluster within 60 s" >&2; exit 1; }
"$PARLEY" members add --target "$(url "$LEADER")" --admin-token "$ADMIN" --node-id 4 \
  --addr "127.0.0.1:$((BASE_PORT + 3))" --wait-secs "$TIMEOUT" >"$WORK/members-add.out" 2>&1 &
MEMBERS_PID=$!
catch_up 4 "${PID[4]}" 0 "node 4, new (join + members add)"
wait "$MEMBERS_PID" || { cat "$WORK/members-add.out" >&2; echo "parley members add failed" >&2; exit 1; }
MEMBERS_PID=""

echo "== comparing digests and journal heads on all 4 nodes" >&2
# The membership change that added node 4 is a raft entry: let every node apply it first.
for ((i = 0; i < 300; i++)); do
  heads=$(for n in 1 2 3 4; do b=$(cluster_of "$n"); echo "$(field "$b" cursor)/$(field "$b" last_applied)"; done | sort -u)
  [[ $(wc -l <<<"$heads") == 1 ]] && break
  sleep 0.1
done
declare -A SEEN
for i in 1 2 3 4; do
  d=$(admin_get "$i" /v1/admin/digest)
  v=$(admin_get "$i" /v1/admin/journal/verify)
  [[ $v == *'"ok":true'* ]] || { echo "node $i: journal verify failed: $v" >&2; exit 1; }
  SEEN[$i]="cursor $(field "$d" cursor) digest $(field "$d" digest) last_cursor $(field "$v" last_cursor) head_hash $(field "$v" head_hash)"
  echo "node $i: ${SEEN[$i]}" >&2
done
for i in 2 3 4; do
  if [[ ${SEEN[$i]} != "${SEEN[1]}" ]]; then
    echo "node $i differs from node 1:" >&2
    echo "  node 1: ${SEEN[1]}" >&2
    echo "  node $i: ${SEEN[$i]}" >&2
    exit 1
  fi
done

FILL=$(python3 - "$WORK/history.jsonl" <<'PY'
import json, sys
run = [json.loads(line) for line in open(sys.argv[1]) if line.strip()][-1]
rows = run["rows"]
first, last = rows[0], rows[-1]
per = (last.get("bytes_per_message") or {}).get("total")
print(f"{last['stored']:,} messages stored; sends/s first slice {first['sends_per_second']:,.0f}, "
      f"last {last['sends_per_second']:,.0f}; leader disk {per:,.0f} bytes/message" if per is not None else "")
PY
)
echo
echo "cluster catch-up, $(date -u +%Y-%m-%dT%H:%MZ), $("$PARLEY" --version), snapshot-every ${SNAPSHOT_EVERY:-default}"
echo "fill: $FILL"
echo
echo "| node | from cursor | to cursor | entries | seconds | entries/s | peak RSS MiB | data dir MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "digest and journal head equal on all 4 nodes: ${SEEN[1]}"
OK=1
