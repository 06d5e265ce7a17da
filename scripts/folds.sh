#!/usr/bin/env bash
# K-fold comparison of chaff and bogofilter on the same folds (issue 13).
#
#   scripts/folds.sh [--folds 5] [--seed 1] [--jobs 2] [--bin target/release/chaff] [--no-bogofilter] CORPUS_DIR...
#   e.g. scripts/folds.sh ../shared/corpus/trec06c-dev ../shared/corpus/trec07p-dev
#
# For each corpus (a folder with a TREC `index`): `chaff eval --folds K` cuts the
# index into K stratified, seeded folds, trains chaff K times on all folds but one,
# once with the training messages shuffled and once label-sorted (all ham, then
# all spam), scans the held-out fold and pools the held-out scores; it writes the
# folds' index files, which bogofilter (Debian's 1.2.5, default settings, trained
# with -s/-n in bulk mode, scored with -TT) is then trained and scored on. Both
# filters' pooled scores go through scripts/roc.py, so every figure has one
# definition. Needs python3 and `bogofilter` (apt-get install -y bogofilter).
# Nothing is written into the project: work files live in a temporary directory
# (kept when KEEP=DIR is set: then in DIR).
set -euo pipefail

folds=5 seed=1 jobs=2 bogo=1
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../target/release/chaff"
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --folds) folds=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --no-bogofilter) bogo=0; shift ;;
        *) sed -n '2,16p' "$0"; exit 2 ;;
    esac
done
[[ $# -ge 1 ]] || { sed -n '2,16p' "$0"; exit 2; }
[[ -x "$bin" ]] || { echo "no chaff binary at $bin: cargo build --release" >&2; exit 1; }
if [[ $bogo == 1 ]] && ! command -v bogofilter >/dev/null; then
    echo "bogofilter not installed: apt-get install -y bogofilter (or --no-bogofilter)" >&2; exit 1
fi
if [[ -n "${KEEP:-}" ]]; then work=$KEEP; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi

# `roc.py` output line → value
metric() { awk -v k="$2" 'index($0, k) == 1 { print $(NF - ($NF == "%" ? 1 : 0)) }' "$1"; }

for dir in "$@"; do
    dir=$(cd "$dir" && pwd)
    name=$(basename "$dir")
    out="$work/$name"; mkdir -p "$out"
    echo "== $name: $folds folds, seed $seed"
    "$bin" eval --folds "$folds" --seed "$seed" --train-order shuffled,sorted --jobs "$jobs" \
        --format json --write-folds "$out" "$dir/index" > "$out/chaff.json"
    for order in shuffled sorted; do
        python3 "$here/roc.py" "$out/scores.$order" > "$out/roc.chaff.$order"
    done
    if [[ $bogo == 1 ]]; then
        : > "$out/scores.bogofilter"
        for f in $(seq 1 "$folds"); do
            db="$out/bogofilter.$f"; rm -rf "$db"; mkdir -p "$db"
            awk '$1=="spam"{print $2}' "$out/fold$f.train" | bogofilter -d "$db" -s -b
            awk '$1=="ham"{print $2}' "$out/fold$f.train" | bogofilter -d "$db" -n -b
            # bulk output is `PATH SCORE`, in input order; the exit status is the
            # last message's class (0 spam, 1 ham, 2 unsure), 3 an error
            rc=0
            awk '{print $2}' "$out/fold$f.test" | bogofilter -d "$db" -TT -b > "$out/bogofilter.$f.out" || rc=$?
            [[ $rc -le 2 ]] || { echo "bogofilter failed ($rc) on fold $f" >&2; exit 1; }
            paste -d' ' <(awk '{print $1}' "$out/fold$f.test") "$out/bogofilter.$f.out" \
                | awk '{print $1, $NF, $2}' >> "$out/scores.bogofilter"
            rm -rf "$db"
        done
        python3 "$here/roc.py" "$out/scores.bogofilter" > "$out/roc.bogofilter"
    fi
    echo "-- $name, pooled held-out scores (scripts/roc.py):"
    printf '%-22s %12s %18s %18s\n' filter "(1-AUC) %" "recall @0.1% FPR" "FPR @99% recall"
    for who in chaff.shuffled chaff.sorted bogofilter; do
        f="$out/roc.$who"
        [[ -f "$f" ]] || continue
        printf '%-22s %12s %16s %% %16s %%\n' "$who" "$(metric "$f" '(1-AUC)')" \
            "$(metric "$f" 'recall @0.1%')" "$(metric "$f" 'FPR @99%')"
    done
    python3 - "$out/chaff.json" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r["train_order"]: r for r in rows}
s, o = by["shuffled"], by["sorted"]
a, b = s["one_minus_auc_pct"], o["one_minus_auc_pct"]
ok_order = b <= a * 1.10 or b - a <= 0.002
print(f"chaff sorted vs shuffled (1-AUC) %: {b:.4f} vs {a:.4f}: "
      f"{'within' if ok_order else 'NOT within'} 10 % (or 0.002 points)")
for r in rows:
    for w in r["train_warnings"]:
        print(f"chaff {r['train_order']:<8} train warning: {w}")
    q, t = r["quarantine"], r["quarantine_fpr_target"]
    ok = q["ham_fpr"] <= 2 * t
    print(f"chaff {r['train_order']:<8} held-out ham FPR at the trained quarantine threshold: "
          f"{100 * q['ham_fpr']:.3f} % ({q['ham_flagged']} ham; target {100 * t:.3f} %, "
          f"{'within' if ok else 'NOT within'} 2x), spam recall {100 * q['spam_recall']:.2f} %")
EOF
done
