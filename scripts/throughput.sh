#!/usr/bin/env bash
# Whole-process throughput of keyword scoring on one and on two cores.
#
#   scripts/throughput.sh [--rounds N] [--bin PATH] INDEX
#   e.g. scripts/throughput.sh --rounds 9 ../shared/corpus/trec06c-dev/index
#
# Runs `chaff eval --jobs 1` and `--jobs 2` alternately, N rounds (default 9) after
# one warm-up run that fills the page cache, and prints every run's messages/s
# (as `eval` reports it: reading included, engine start-up excluded), the median
# of each, the ratio of the medians, the median of the per-round ratios, and the
# peak RSS of each mode (GNU time). Alternating keeps slow phases of a shared
# machine from falling on one mode only. Needs python3 and /usr/bin/time; builds
# nothing: pass --bin or build `cargo build --release` first.
set -euo pipefail

rounds=9
bin=target/release/chaff
while [[ $# -gt 1 ]]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) break ;;
    esac
done
[[ $# -eq 1 ]] || { sed -n '2,12p' "$0"; exit 2; }
index=$1
[[ -x $bin ]] || { echo "$bin not found: cargo build --release" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" eval --jobs 1 --format json "$index" >/dev/null
for ((r = 1; r <= rounds; r++)); do
    for j in 1 2; do
        /usr/bin/time -f "%M" -o "$out/rss" "$bin" eval --jobs $j --format json "$index" >"$out/json"
        python3 -c 'import json,sys; print(sys.argv[1], json.load(open(sys.argv[2]))["msgs_per_sec"], open(sys.argv[3]).read().split()[-1])' \
            $j "$out/json" "$out/rss" >>"$out/runs"
    done
done
python3 - "$out/runs" <<'EOF'
import statistics as st, sys
runs = {1: [], 2: []}
rss = {1: 0, 2: 0}
for line in open(sys.argv[1]):
    j, v, kb = line.split()
    runs[int(j)].append(float(v))
    rss[int(j)] = max(rss[int(j)], int(kb))
for j in (1, 2):
    print(f"--jobs {j}: " + " ".join(f"{v:.0f}" for v in runs[j]))
m1, m2 = st.median(runs[1]), st.median(runs[2])
pairs = st.median(b / a for a, b in zip(runs[1], runs[2]))
print(f"median --jobs 1 {m1:.0f} msgs/s, --jobs 2 {m2:.0f} msgs/s: {m2 / m1:.2f}x "
      f"(median of per-round ratios {pairs:.2f}x)")
print(f"peak RSS --jobs 1 {rss[1] / 1024:.0f} MB, --jobs 2 {rss[2] / 1024:.0f} MB")
EOF
