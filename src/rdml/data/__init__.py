"""Data sets: a torch-free catalogue of names, kinds and specs (`rdml.data.catalog`), one module per
source (`digits`, `generated`, `vision`, `photos`), and the tensors training reads (`rdml.data.base`)."""
