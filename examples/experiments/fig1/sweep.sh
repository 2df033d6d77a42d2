#!/usr/bin/env bash
# The Fig. 1 twin of docs/results.md §8: 200 in-domain CommonsenseQA rows plus a growing out-of-distribution
# share (0, 20, 40, 60 % of the mix), each point one cached, resumable `taia run`; re-running skips finished
# points. LR (default 1e-3) and OUT (default runs/fig1) give a series at another update size. Then the plot:
#   bash examples/experiments/fig1/sweep.sh && python examples/experiments/fig1/plot.py runs/fig1
#   bash examples/experiments/fig1/sweep.sh 3e-3 runs/fig1-lr3e-3 && python examples/experiments/fig1/plot.py runs/fig1-lr3e-3
set -euo pipefail
here="$(dirname "$0")"
lr="${1:-1e-3}"
out="${2:-runs/fig1}"
csqa='{path: commonsenseqa/train_rand_split.jsonl, hub: tau/commonsense_qa, split: train, format: multiple_choice, columns: {answer: answerKey}, count: 200}'
taia run "$here/csqa-ood.yaml" "train.data=[$csqa]" train.lr="$lr" name="fig1-csqa-ood-0-lr$lr" out="$out/ood-0"
for share in 0.2 0.4 0.6; do
  taia run "$here/csqa-ood.yaml" train.data.1.ratio=$share train.lr="$lr" name="fig1-csqa-ood-$share-lr$lr" \
    out="$out/ood-$share"
done
