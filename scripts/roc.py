#!/usr/bin/env python3
"""Ranking metrics for a spam filter's scores, the same definitions as `chaff eval`.

Input lines: `LABEL SCORE [anything]` with LABEL `spam` or `ham` and a higher SCORE
meaning more spammy. Prints ROC AUC (ties count half), (1-AUC) %, spam recall at
0.1 % ham false positives, ham false positives at 99 % spam recall, and (for the
record) the same at 0.5 % / 98 %.

A threshold t flags every message with score >= t. "Recall at F% FPR" is the best
recall over thresholds whose ham FPR is <= F%; "FPR at R% recall" is the smallest
FPR over thresholds whose recall is >= R%. Ties are never split, so a tie between
ham and spam costs what it should.
"""
import sys


def metrics(pairs):
    spam = sum(1 for l, _ in pairs if l)
    ham = len(pairs) - spam
    # Descending score; walk groups of equal score.
    pairs = sorted(pairs, key=lambda p: -p[1])
    tp = fp = 0
    auc2 = 0  # twice the Mann-Whitney count
    curve = []  # (fpr, recall) after each distinct score
    i = 0
    while i < len(pairs):
        j = i
        s = h = 0
        while j < len(pairs) and pairs[j][1] == pairs[i][1]:
            if pairs[j][0]:
                s += 1
            else:
                h += 1
            j += 1
        # ham in this group are beaten by all spam above it and tie with s here
        auc2 += h * (2 * tp + s)
        tp += s
        fp += h
        curve.append((fp / ham if ham else 0.0, tp / spam if spam else 0.0))
        i = j
    auc = auc2 / (2.0 * spam * ham) if spam and ham else float("nan")

    def recall_at(fpr_max):
        return max([r for f, r in curve if f <= fpr_max + 1e-12] + [0.0])

    def fpr_at(rec_min):
        return min([f for f, r in curve if r >= rec_min - 1e-12] + [1.0])

    return spam, ham, auc, recall_at, fpr_at


def main():
    pairs = []
    for line in open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin:
        parts = line.split()
        if len(parts) < 2:
            continue
        pairs.append((parts[0] == "spam", float(parts[1])))
    spam, ham, auc, recall_at, fpr_at = metrics(pairs)
    print(f"messages            {len(pairs)} (spam {spam}, ham {ham})")
    print(f"ROC AUC             {auc:.6f}")
    print(f"(1-AUC) %           {100 * (1 - auc):.4f}")
    print(f"recall @0.1% FPR    {100 * recall_at(0.001):.2f} %")
    print(f"FPR @99% recall     {100 * fpr_at(0.99):.3f} %")
    print(f"recall @0.5% FPR    {100 * recall_at(0.005):.2f} %")
    print(f"FPR @98% recall     {100 * fpr_at(0.98):.3f} %")


if __name__ == "__main__":
    main()
