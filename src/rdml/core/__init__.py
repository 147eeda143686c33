"""The math of the papers: Rényi divergences and the KD / DML losses. Imports nothing above it."""
