#!/usr/bin/env bash
# Whole-process throughput: `chaff eval` of a TREC index on one core and on two,
# keyword scoring alone and with a trained model, start-up included, against an
# earlier build and bogofilter on the same messages.
#
#   scripts/throughput.sh [--rounds N] [--bin PATH] [--base PATH] [--model MODEL]
#                         [--no-bogofilter] INDEX
#   e.g. scripts/throughput.sh --rounds 5 --base /tmp/chaff-before ../shared/corpus/trec06c-dev/index
#
# Every round runs, for each build (--base first, when given, then --bin) and mode
# (keywords, model), `chaff eval --jobs 1` pinned to one CPU (taskset) and
# `--jobs 2`, alternately, after one warm-up run that fills the page cache.
# Printed per build, mode and job count, medians over the rounds:
#   msgs/s      messages / wall time of the whole process (start-up included)
#   msgs/cpu-s  messages / (user + sys) CPU time of the whole process: the figure a
#               shared machine disturbs least; for --jobs 1 it is msgs/s per core
#   MB/s        message bytes / wall time
#   eval        `eval`'s own msgs_per_sec (reading included, start-up excluded)
#   RSS         peak resident memory (GNU time), the largest of the rounds
# and the --jobs 2 / --jobs 1 ratio of the msgs/s medians. Without --model a model
# is trained (`chaff train` with the --bin build) on the first half of INDEX into a
# temporary directory, as README's measured figures do. bogofilter (when
# installed), trained on the same first half with `-s`/`-n` in bulk mode, then
# scores every message of INDEX (`-T -b`, one process) once per round; its rate is
# reported the same way. Needs python3, GNU time (/usr/bin/time); builds nothing:
# pass --bin or run `cargo build --release` first.
set -euo pipefail

rounds=5
bin=target/release/chaff
base=
model=
bogo=1
while [[ $# -gt 1 ]]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --no-bogofilter) bogo=; shift ;;
    *) break ;;
    esac
done
[[ $# -eq 1 ]] || { sed -n '2,27p' "$0"; exit 2; }
index=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
dir=$(dirname "$index")
for b in "$bin" $base; do
    [[ -x $b ]] || { echo "$b not found: cargo build --release" >&2; exit 1; }
done
command -v bogofilter >/dev/null || bogo=
one_cpu=()
command -v taskset >/dev/null && one_cpu=(taskset -c 0)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=$(grep -c . "$index")
bytes=$(cd "$dir" && awk 'NF {print $2}' "$index" | xargs -d '\n' stat -c %s | awk '{s += $1} END {print s}')
half=$((n / 2))
awk -v k="$half" -v d="$dir" 'NF && ++i <= k { print $1, d "/" $2 }' "$index" >"$out/train.index"
if [[ -z $model ]]; then
    model=$out/model
    "$bin" train --jobs 2 -o "$model" "$out/train.index" >/dev/null
fi
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
printf 'model = "%s"\n' "$model" >"$out/model.toml"
if [[ -n $bogo ]]; then
    mkdir "$out/bogo"
    awk '$1 == "spam" {print $2}' "$out/train.index" | bogofilter -d "$out/bogo" -s -b
    awk '$1 == "ham" {print $2}' "$out/train.index" | bogofilter -d "$out/bogo" -n -b
    (cd "$dir" && awk 'NF {print $2}' "$index") >"$out/all.paths"
fi

builds=()
[[ -n $base ]] && builds+=("base=$base")
builds+=("new=$bin")
"$bin" eval --jobs 1 --format json "$index" >/dev/null
for ((r = 1; r <= rounds; r++)); do
    for b in "${builds[@]}"; do
        name=${b%%=*} path=${b#*=}
        for mode in keywords model; do
            config=()
            [[ $mode == model ]] && config=(--config "$out/model.toml")
            for j in 1 2; do
                pin=()
                [[ $j == 1 ]] && pin=("${one_cpu[@]}")
                /usr/bin/time -f "%e %U %S %M" -o "$out/time" \
                    "${pin[@]}" "$path" eval --jobs $j --format json "${config[@]}" "$index" >"$out/json"
                echo "$name $mode $j $(tail -1 "$out/time") $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["msgs_per_sec"])' "$out/json")" >>"$out/runs"
            done
        done
    done
    if [[ -n $bogo ]]; then
        (cd "$dir" && /usr/bin/time -f "%e %U %S %M" -o "$out/time" \
            "${one_cpu[@]}" bogofilter -d "$out/bogo" -T -b <"$out/all.paths" >/dev/null)
        echo "bogofilter - 1 $(tail -1 "$out/time") 0" >>"$out/runs"
    fi
done
python3 - "$out/runs" "$n" "$bytes" <<'EOF'
import statistics as st, sys
n, size = int(sys.argv[2]), int(sys.argv[3])
runs = {}
for line in open(sys.argv[1]):
    name, mode, j, wall, user, sys_, kb, ev = line.split()
    runs.setdefault((name, mode, int(j)), []).append(
        (float(wall), float(user) + float(sys_), int(kb), float(ev)))
print(f"{n} messages, {size / 1e6:.1f} MB; medians of {len(next(iter(runs.values())))} rounds")
print(f"{'build':10} {'mode':9} {'jobs':>4} {'msgs/s':>8} {'msgs/cpu-s':>10} {'MB/s':>6} {'eval':>8} {'RSS MB':>6}")
walls = {}
for (name, mode, j), rs in runs.items():
    wall = st.median(r[0] for r in rs)
    cpu = st.median(r[1] for r in rs)
    walls[(name, mode, j)] = wall
    ev = st.median(r[3] for r in rs)
    print(f"{name:10} {mode:9} {j:4} {n / wall:8.0f} {n / cpu:10.0f} {size / 1e6 / wall:6.1f} "
          f"{ev if ev else float('nan'):8.0f} {max(r[2] for r in rs) / 1024:6.0f}")
for (name, mode, j), wall in walls.items():
    if j == 2 and (name, mode, 1) in walls:
        print(f"{name} {mode}: --jobs 2 / --jobs 1 = {walls[(name, mode, 1)] / wall:.2f}x")
EOF
