#!/usr/bin/env bash
# bogofilter baseline for issue 3: a chronological split of each TREC-style index
# (the first FRACTION of the index, in index order, trains; the rest is scored),
# the same split `chaff eval --split FRACTION` uses.
#
#   scripts/bogofilter-baseline.sh [--split 0.5] CORPUS_DIR...
#   e.g. scripts/bogofilter-baseline.sh ../shared/corpus/trec06c-dev ../shared/corpus/trec07p-dev
#
# Needs Debian's `bogofilter` (apt-get install -y bogofilter) and python3. Runs
# bogofilter with its Debian defaults (/etc/bogofilter.cf), trains with `-s`/`-n` in
# bulk mode, scores with `-TT` (spamicity to 16 digits) and prints the metrics of
# scripts/roc.py plus scoring speed (one process). Nothing is written into the project:
# the word lists and score files live in a temporary directory.
set -euo pipefail

split=0.5
if [[ "${1:-}" == "--split" ]]; then split=$2; shift 2; fi
[[ $# -ge 1 ]] || { sed -n '2,12p' "$0"; exit 2; }
command -v bogofilter >/dev/null || { echo "bogofilter not installed: apt-get install -y bogofilter" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for dir in "$@"; do
    dir=$(cd "$dir" && pwd)
    name=$(basename "$dir")
    db="$work/$name.db"; mkdir -p "$db"
    n=$(grep -c . "$dir/index")
    ntrain=$(python3 -c "import math,sys; print(math.floor($n*$split))")
    awk -v k="$ntrain" 'NF { if (++i <= k) print > "/dev/stdout"; else print > "/dev/stderr" }' \
        "$dir/index" > "$work/$name.train" 2> "$work/$name.test"
    cd "$dir"
    t0=$(date +%s.%N)
    awk '$1=="spam"{print $2}' "$work/$name.train" | bogofilter -d "$db" -s -b
    awk '$1=="ham"{print $2}' "$work/$name.train" | bogofilter -d "$db" -n -b
    t1=$(date +%s.%N)
    awk '{print $2}' "$work/$name.test" | bogofilter -d "$db" -TT -b > "$work/$name.scores"
    t2=$(date +%s.%N)
    cd - >/dev/null
    # bulk output is `PATH SCORE`, in input order: pair it with the labels
    paste -d' ' <(awk '{print $1}' "$work/$name.test") <(awk '{print $NF}' "$work/$name.scores") > "$work/$name.labelled"
    ntest=$((n - ntrain))
    echo "== bogofilter $(bogofilter -V 2>&1 | head -1 | awk '{print $3}') on $name: train $ntrain, test $ntest (split $split)"
    python3 "$here/roc.py" "$work/$name.labelled"
    python3 -c "print(f'train msgs/s        {$ntrain/($t1-$t0):.0f}'); print(f'score msgs/s        {$ntest/($t2-$t1):.0f} (one process)')"
    if [[ -n "${KEEP_SCORES:-}" ]]; then cp "$work/$name.labelled" "$KEEP_SCORES/$name.bogofilter.scores"; fi
done
