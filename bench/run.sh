#!/usr/bin/env bash
# Runs every benchmark of the repository and prints the table
# docs/benchmarks.md shows: one row per figure, with its goal.
#
# Each package that has benchmarks is compiled once; each of its
# benchmarks then runs with its own -benchtime (below; BENCHTIME overrides
# them all, e.g. BENCHTIME=1x for a quick check). The figures are the
# metrics the benchmarks report with b.ReportMetric (p50-ms, p99-ms, ...).
# A figure of a benchmark that failed shows as "(not run)"; metrics no
# row names are listed after the table, so a new benchmark is never
# missed. The raw `go test` output stays in $BENCH_OUT (default: a new
# temporary directory).
#
# The benchmarks need what the tests need: PostgreSQL and PgBouncer
# (scripts/install-test-deps.sh) and the Kubernetes control plane
# (scripts/k8s-testbed.sh; `make bench` does both). CI is set, so a
# benchmark whose servers are missing fails instead of skipping.
#
# Usage: bench/run.sh            every package
#        bench/run.sh PKG...     only these packages (./internal/forge/github/)
set -uo pipefail

cd "$(dirname "$0")/.."
GO="${GO:-go}"
export CI="${CI:-true}"
if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  KUBEBUILDER_ASSETS="$(./scripts/k8s-testbed.sh --dir)"
  export KUBEBUILDER_ASSETS
fi
out="${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/previewd-bench.XXXXXX")}"
mkdir -p "$out"

# -benchtime of each benchmark; the others run Go's default (1s).
benchtime() {
  case "$1" in
  BenchmarkPushToReady | BenchmarkDBCreateProcess | BenchmarkGitHubWebhookToReady) echo 30x ;;
  BenchmarkWebhookAck | BenchmarkResync1000) echo 2000x ;;
  BenchmarkApplyEnvironment) echo 30x ;;
  BenchmarkApply100Parallel | BenchmarkIdle200 | BenchmarkCloneTemplate1GB | BenchmarkPROpenedGoCold) echo 1x ;;
  BenchmarkWakeOnRequest | BenchmarkWake | BenchmarkEventToDashboard) echo 50x ;;
  BenchmarkEventsFanout) echo 500x ;;
  BenchmarkEventToDOM) echo 100x ;;
  BenchmarkMaterialize) echo 3x ;;
  BenchmarkPROpenedNode | BenchmarkPROpenedGo) echo 7x ;;
  *) echo 1s ;;
  esac
}

# The rows of the table: benchmark (without the -GOMAXPROCS suffix),
# what it measures, its goal, and the figure, where {unit} stands for the
# value the benchmark reported with that unit.
rows='BenchmarkPushToReady|push to ready (local runtime, SQLite)|≤ 300 ms|p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPushToReady|teardown (local runtime, SQLite)|≤ 200 ms|p50 {teardown-p50-ms} ms, p90 {teardown-p90-ms} ms, max {teardown-max-ms} ms
BenchmarkEnsureSchema|role + schema + grants, in-process, median||{ms-provision} ms
BenchmarkEnsureSchema|the same plus a login as the role and a one-table migration, median|≤ 25 ms|{ms-provision+migrate} ms
BenchmarkDropSchema|DROP SCHEMA CASCADE, DROP OWNED, DROP ROLE, median|≤ 20 ms|{ms-median} ms
BenchmarkCloneTemplate200k/FILE_COPY|CREATE DATABASE … TEMPLATE (FILE_COPY) of a 200,000-row template, median|≤ 300 ms|{ms-median} ms
BenchmarkCloneTemplate200k/WAL_LOG|the same with WAL_LOG, median||{ms-median} ms
BenchmarkCloneTemplate1GB|CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY of a 1.16 GB template, fsync on|≤ 5 s|{s-clone} s; the disk copies {MB/s-disk-copy} MB/s, so clone/disk-copy = {clone/disk-copy}
BenchmarkDBCreateProcess|previewd db create as a whole process, p50 / p90|≤ 60 ms|{create-p50-ms} / {create-p90-ms} ms
BenchmarkDBCreateProcess|previewd db drop as a whole process, p50 / p90||{drop-p50-ms} / {drop-p90-ms} ms
BenchmarkWebhookAck|webhook acknowledgement (28 KB pull_request.opened, signed, loopback HTTP)|p99 ≤ 10 ms|p50 {p50-ms} ms, p99 {p99-ms} ms
BenchmarkResync1000|one resync with 1,000 open PRs and no changes|one conditional request (304), ≤ 100 ms CPU|{requests/op} requests, {non-304/op} not 304, {cpu-ms/op} ms CPU
BenchmarkGitHubWebhookToReady|webhook to ready (local runtime, SQLite)|p50 ≤ 300 ms|p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkApplyEnvironment|one environment applied, manifests read from its commit (kubernetes runtime, no rollout wait)|p50 ≤ 50 ms|p50 {p50-ms} ms, p99 {p99-ms} ms, first {first-ms} ms
BenchmarkApply100Parallel|100 environments applied at once, manifests from one commit (kubernetes runtime)|≤ 10 s|{s/100envs} s
BenchmarkWakeOnRequest|a request to a sleeping preview through the proxy, arrival to answer (local runtime, SQLite, prebuilt app)|p50 ≤ 150 ms, p99 ≤ 400 ms|p50 {wake-p50-ms} ms, p99 {wake-p99-ms} ms, max {wake-max-ms} ms
BenchmarkWake|the local runtime alone: Prepare + Deploy of a built SHA and one held request||p50 {wake-p50-ms} ms, p99 {wake-p99-ms} ms
BenchmarkIdle200|200 previews, 190 asleep: previewd serve resident memory|≤ 150 MB|{rss-MB} MB
BenchmarkIdle200|the same: its CPU over six idle minutes, share of one core|≤ 1 %|{idle-cpu-%} %
BenchmarkAdmit|the cap decision with 1,000 previews queued and 10 running|≤ 5 ms|{ms/decision} ms
BenchmarkUsage|the local meter: one /proc scan for 10 process groups||{ms/scan} ms
BenchmarkMaterialize/hard|a cache entry of 20,000 files (78 MiB, node_modules-shaped) into a checkout by hard links (share: link on ext4)||{ms/entry} ms
BenchmarkMaterialize/copy|the same by copying (copy_file_range)||{ms/entry} ms
BenchmarkMaterialize/symlink|the same by one symbolic link||{ns/op} ns
BenchmarkPROpenedNode/warm|PR opened → URL ready: the Node example (its previewd.yaml: npm cache entry made, web + worker, PostgreSQL via PgBouncer), sync to 200 through the proxy|≤ 30 s|p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPROpenedNode/cold|the same with the cache directory emptied first (npm ci --offline runs)||p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPROpenedNode/push|a push to an open PR that changes server.js only (warm cache)||p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPROpenedGo/recipe/warm|PR opened → URL ready: the Go example (the README Go recipe: go build -trimpath -ldflags="-s -w", the Go build cache warm, PostgreSQL via PgBouncer)|≤ 3 s|p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPROpenedGo/recipe/push|a push to an open PR that changes banner.txt (the Go example, the recipe)||p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPROpenedGo/plain/warm|PR opened → URL ready, the Go example with a plain go build -o server .||p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPROpenedGo/plain/push|a push, the same||p50 {ready-p50-ms} ms, p90 {ready-p90-ms} ms, max {ready-max-ms} ms
BenchmarkPROpenedGoCold|PR opened → URL ready, the Go example (the recipe) with an empty Go build cache (one run)||{ready-max-ms} ms
BenchmarkEventsFanout|200 subscribers of GET /api/v1/events over loopback: a change to every subscriber having parsed it|p99 ≤ 50 ms|p50 {p50-ms} ms, p99 {p99-ms} ms
BenchmarkEventsFanout|the same: memory for 200 subscribers (both ends in one process)|≤ 20 MB|heap {heap-MB} MB, RSS {rss-MB} MB
BenchmarkEventToDashboard|a change saved to the open dashboard showing it (real previewd, headless Chromium)|p50 ≤ 100 ms|p50 {p50-ms} ms, p90 {p90-ms} ms, max {max-ms} ms
BenchmarkEventToDOM|the server part alone: the SSE frame written to the DOM updated||p50 {p50-ms} ms, p90 {p90-ms} ms'

# The packages with benchmarks, and their benchmarks.
if [ $# -gt 0 ]; then
  pkgs=("$@")
else
  mapfile -t pkgs < <(git ls-files '*_test.go' | xargs grep -l '^func Benchmark' | xargs -n1 dirname | sort -u | sed 's|^|./|')
fi

status=0
results="$out/results.txt"
attempted="$out/attempted.txt"
: >"$results"
: >"$attempted"
for pkg in "${pkgs[@]}"; do
  dir="${pkg#./}"
  dir="${dir%/}"
  name="${dir//\//_}"
  bin="$out/$name.test"
  echo "bench: building $pkg" >&2
  if ! "$GO" test -c -o "$bin" "./$dir" >"$out/$name.build.txt" 2>&1; then
    echo "bench: building $pkg failed (see $out/$name.build.txt)" >&2
    status=1
    continue
  fi
  for b in $(grep -ho '^func Benchmark[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
    t="${BENCHTIME:-$(benchtime "$b")}"
    echo "bench: $pkg $b -benchtime $t" >&2
    log="$out/$name.$b.txt"
    echo "$b" >>"$attempted"
    if ! (cd "$dir" && "$bin" -test.run '^$' -test.bench "^$b\$" -test.benchtime "$t" -test.timeout 60m) >"$log" 2>&1; then
      echo "bench: $b failed (see $log)" >&2
      tail -n 20 "$log" >&2
      status=1
    fi
    grep -E '^Benchmark[^ 	]+[ 	]+[0-9]+[ 	]' "$log" >>"$results"
  done
done

awk -v rows="$rows" '
  BEGIN { FS = "[ \t]+" }
  FILENAME == ARGV[1] { ran[$1] = 1; next }
  {
    name = $1; sub(/-[0-9]+$/, "", name)
    for (i = 3; i + 1 <= NF; i += 2) v[name, $(i+1)] = $i
  }
  END {
    print "| benchmark | metric | goal | measured |"
    print "|---|---|---|---|"
    n = split(rows, rs, "\n")
    for (r = 1; r <= n; r++) {
      split(rs[r], f, "|")
      top = f[1]; sub(/\/.*/, "", top)
      if (!(top in ran)) continue
      fig = f[4]; missing = 0
      while (match(fig, /\{[^}]+\}/)) {
        u = substr(fig, RSTART + 1, RLENGTH - 2)
        if ((f[1], u) in v) val = v[f[1], u]; else { val = "?"; missing = 1 }
        fig = substr(fig, 1, RSTART - 1) val substr(fig, RSTART + RLENGTH)
        named[f[1], u] = 1
      }
      if (missing) fig = "(not run)"
      b = f[1]; sub(/^Benchmark/, "", b)
      printf "| %s | %s | %s | %s |\n", b, f[2], f[3], fig
    }
    for (k in v) {
      split(k, kk, SUBSEP)
      if (!((kk[1], kk[2]) in named) && kk[2] != "ns/op" && kk[2] != "B/op" && kk[2] != "allocs/op")
        extra = extra sprintf("%s %s %s\n", kk[1], v[k], kk[2])
    }
    if (extra != "") { printf "\nFigures no row names:\n%s", extra }
  }
' "$attempted" "$results"
echo "bench: raw output in $out" >&2
exit "$status"
