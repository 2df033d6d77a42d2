#!/usr/bin/env bash
# The Fig. 1 twin of docs/results.md §8: 200 in-domain CommonsenseQA rows plus a growing out-of-distribution
# share (0, 20, 40, 60 % of the mix), each point one cached, resumable `taia run`; re-running skips finished
# points. Then the plot:
#   bash examples/experiments/fig1/sweep.sh && python examples/experiments/fig1/plot.py runs/fig1
set -euo pipefail
here="$(dirname "$0")"
csqa='{path: commonsenseqa/train_rand_split.jsonl, hub: tau/commonsense_qa, split: train, format: multiple_choice, columns: {answer: answerKey}, count: 200}'
taia run "$here/csqa-ood.yaml" "train.data=[$csqa]" name=fig1-csqa-ood-0 out=runs/fig1/ood-0
for share in 0.2 0.4 0.6; do
  taia run "$here/csqa-ood.yaml" train.data.1.ratio=$share name=fig1-csqa-ood-$share out=runs/fig1/ood-$share
done
