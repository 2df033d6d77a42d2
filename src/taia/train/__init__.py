"""`taia train`: fine-tune with TRL's SFTTrainer and PEFT (LoRA, full, TOA/TOF, MoLoRA).

    taia train CONFIG.yaml [key=value ...]
    taia train --model smollm2-135m-instruct --data alpaca_gpt4/alpaca_en_demo.json --out runs/lora

`taia.train(TrainConfig(...))` is the same call. See taia/train/trainer.py for the output layout.
The names below load lazily, so a submodule such as `taia.train.config` (the config schema the CLI and
`taia run` read) or `taia.train.molora` imports without TRL.
"""

from __future__ import annotations

from taia._verbs import callable_package, lazy_exports

__all__ = ["TrainConfig", "train"]
_EXPORTS = {"TrainConfig": "taia.train.config", "train": "taia.train.trainer"}

__getattr__ = lazy_exports(__name__, _EXPORTS)


callable_package(__name__, "train")
