"""Reporting: a study's tables, claims, paper comparisons, figures and measured compute, from the run
records of the runs its layouts (rdml.study.layouts) plan. `rdml tables` is `write.write_tables`.

records (what a table may read) → cells (a layout's cells) → table (one table) → formats, claims, paper
(how it is written and tested) → write (the study's files); stats, render, frame, figures and compute
serve them."""
