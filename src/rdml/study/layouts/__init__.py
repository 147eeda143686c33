"""Table layouts, one module each, registered in `LAYOUTS` under the params.yaml key that asks for
them. A layout is a function `(plan, spec) -> TableSpec`: `plan` builds the study's runs
(rdml.study.plan.StudyPlan), `spec` is the table's section of params.yaml.

Adding a layout: a module here registered with `@layout("<key>_table", <its keys>)`, imported below,
and its section in workflow/schemas/params.schema.yaml.
"""

from rdml.study.layouts import analyses, cohort, kd, kd_vs_dml, methods, okdph, outputs, pair, rdml, semi, semi_identities, text  # noqa: F401, E501  (registers them)
from rdml.study.layouts import market, okdph_generalization, okdph_landscape, settings, tsne, update_order  # noqa: F401, E501  (register their tables)
from rdml.study.layouts.base import LAYOUTS, Choice, Claim, Derived, Entry, TableSpec, entry_measurements

__all__ = ["LAYOUTS", "Choice", "Entry", "Derived", "Claim", "TableSpec", "entry_measurements"]
