"""Training data, shared by `taia train` and the tasks that read a fine-tune's data (persona): record
formats (`formats`) and the seeded mix of sources (`mixing`). Below `train/` and `eval/`: neither imports the
other for it.
"""
