"""rdml: reproducible online and offline knowledge distillation (DML, Rényi DML, KD, Rényi KD)."""

__version__ = "0.1.0"
