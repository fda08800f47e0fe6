"""dawgen: few-shot prompt tuning with synthetic data from a tuned generator (Guo et al., COLM 2024)."""

__version__ = "0.1.0"
