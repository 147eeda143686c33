"""Studies of params.yaml: their checks (`params`), the runs and jobs they plan from their tables' layouts
(`plan`, `runs`, `layouts`) and the papers' reported numbers (`reported`). Torch-free. The pipeline that
runs them is rdml.pipeline, the tables are written by rdml.report, the audit is rdml.audit."""
