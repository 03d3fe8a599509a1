"""The report stage (workflow/rules/report.smk): figures, the listening page and run provenance.

- ``figures``: what every figure shares (style, PNG + SVG written atomically, same bytes for the same input).
- ``plots``: per-target boxplots of the scores and the per-seed scatter of "All".
- ``curves``: the learning curves of every model and seed.
- ``excerpts``: choosing and encoding the listening excerpts.
- ``listening``: the listening page.
- ``run``: the run's provenance record (with what each row cost) and its page.
- ``front``: the report's front page: what was run, on what, what it cost, the headline table.

The pages are written on :func:`demixbench.htmlpage.page`, the shell the table stage uses too.
"""
