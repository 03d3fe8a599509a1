"""The report stage (workflow/rules/report.smk): figures, the listening page and run provenance.

- ``plots``: per-target boxplots, the per-seed scatter and learning curves.
- ``excerpts``: choosing and encoding the listening excerpts.
- ``listening``: the listening page.
- ``run``: the run's provenance record and its page.

The two pages are written on :func:`demixbench.htmlpage.page`, the shell the table stage uses too.
"""
