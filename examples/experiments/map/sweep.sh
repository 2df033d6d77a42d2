#!/usr/bin/env bash
# The map of docs/results.md §7: OOD data (general / narrow) × update size (LoRA lr 2e-4, 1e-3, 3e-3; full 5e-5), each
# point one cached, resumable `taia run`; re-running skips finished points. Then the plot:
#   bash examples/experiments/map/sweep.sh && python examples/experiments/map/plot.py runs/map
set -euo pipefail
here="$(dirname "$0")"
for data in general narrow; do
  taia run "$here/$data-lora.yaml"                                                # LoRA lr 1e-3
  taia run "$here/$data-lora.yaml" train.lr=2e-4 name="map-$data-lora-2e-4" out="runs/map/$data-lora-2e-4"
  taia run "$here/$data-lora.yaml" train.lr=3e-3 name="map-$data-lora-3e-3" out="runs/map/$data-lora-3e-3"
  taia run "$here/$data-lora.yaml" train.method=full train.lr=5e-5 name="map-$data-full-5e-5" \
    out="runs/map/$data-full-5e-5"
done
