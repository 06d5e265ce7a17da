#!/usr/bin/env bash
# Per-message verdicts of two builds, compared: every message of the given
# folders is scored by both (`chaff score --format json`, keyword scoring alone
# and, with --model, with a trained model too) and the outputs must be byte for
# byte the same: action, score, reply, reason, hits with their excerpts, tokens.
#
#   scripts/compare-verdicts.sh [--model MODEL] BEFORE_BIN AFTER_BIN DIR...
#   e.g. cp target/release/chaff /tmp/before   # before the change, then rebuild
#        scripts/compare-verdicts.sh --model /tmp/m.model /tmp/before target/release/chaff \
#            ../shared/corpus/trec06c-dev ../shared/corpus/trec07p-dev
#
# A model is trained by `chaff train` (see README, "Learning from your mail");
# both builds load the same file. Prints the number of messages compared per mode
# and the first differing lines; exits 1 if any line differs. Writes nothing
# into the project (outputs live in a temporary directory).
set -euo pipefail

model=
if [[ "${1:-}" == "--model" ]]; then model=$2; shift 2; fi
[[ $# -ge 3 ]] || { sed -n '2,14p' "$0"; exit 2; }
before=$(realpath "$1") after=$(realpath "$2")
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

modes=(keywords)
if [[ -n $model ]]; then
    model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
    printf 'model = "%s"\n' "$model" >"$work/model.toml"
    modes+=(model)
fi
status=0
for mode in "${modes[@]}"; do
    config=()
    [[ $mode == model ]] && config=(--config "$work/model.toml")
    for which in before after; do
        bin=${!which}
        # Exit status 1 means some message could not be read: compared too.
        "$bin" score --format json "${config[@]}" "$@" >"$work/$mode.$which" || true
    done
    n=$(wc -l <"$work/$mode.before")
    if cmp -s "$work/$mode.before" "$work/$mode.after"; then
        echo "$mode: $n messages, identical"
    else
        status=1
        d=$(diff "$work/$mode.before" "$work/$mode.after" | grep -c '^<' || true)
        echo "$mode: $n messages, $d differ; the first:"
        diff "$work/$mode.before" "$work/$mode.after" | head -6 | cut -c1-400
    fi
done
exit $status
