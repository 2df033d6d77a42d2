"""The only modules that touch disk: configs, checkpoints, adapters, atomic output directories."""
