#!/usr/bin/env bash
# A bounded soak of the demo on Redis, with Redis killed and restarted in
# the middle: `scripts/soak.sh [SECONDS] [CLIENTS] [RATE]` (defaults 600 s,
# 16 clients at 40 requests/s each). Prints, every 10 s, the requests
# answered by class and the load process's resident memory. Loopback only;
# a private redis-server on a free port in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
clients=${2:-16}
rate=${3:-40}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_redis() {
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server did not start" >&2; exit 1
}
cleanup() { [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
cargo build --release --example load --features redis -q
start_redis
(
  sleep $((seconds / 2))
  echo "--- t≈$((seconds / 2))s: killing redis-server (SIGKILL)"
  kill -9 "$(cat "$dir/redis.pid")"
  sleep 5
  echo "--- restarting redis-server"
  start_redis
) &
target/release/examples/load --redis "redis://127.0.0.1:$port/" --redis-only \
  --seconds "$seconds" --clients "$clients" --rate "$rate" --report 10
wait
