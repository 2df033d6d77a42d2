"""Training data, shared by `taia train` and the tasks that read a fine-tune's data (persona): record
formats (`formats`) and the seeded mix of sources (`mixing`). Below `train/`; of `eval/` it uses only the
option letters and their block (taia.eval.task, taia.eval.protocol, which import nothing of taia.data), so
a multiple-choice training prompt lists its options exactly as `taia eval` does.
"""
