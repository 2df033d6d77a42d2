"""Analyses of what a fine-tune changes inside the model (beyond the weights that `taia inspect` counts).

`hidden` measures hidden states per layer against the base model's: `taia inspect --hidden-states`.
"""
