"""The table stage (workflow/rules/table.smk and the ``demixbench table`` command): leaderboard
tables (SDR, ISR, SIR or SAR) from per-track museval / SiSEC score files
(:mod:`demixbench.score.scorefile`; one directory of score files is one run, one seed, of a method).

Modules
-------
``runs``
    read one run: per-track medians over frames of a metric, per-track nSDR (``track_frame_medians``).
``stats``
    aggregation over tracks, mean ± s.e. over seeds, the per-track Wilcoxon p-value (secondary).
``significance``
    the difference rows: seed design, seed and track variance, t interval and test, Holm, MDD.
``plan``
    ``demixbench plan``: minimum detectable differences per number of seeds, from score files.
``model``
    the rows (``MethodRuns``, ``Comparison``), the aggregations, and the built ``Leaderboard``
    with its captions and JSON structure.
``render``
    the output files: Markdown, CSV, JSON, LaTeX, HTML and the DVC metrics file.
``build``
    ``build_table``: read, check and aggregate the runs into a ``Leaderboard``.

Aggregations
------------
Each table is computed under up to three aggregations, each a table of its own in the outputs
(``aggregation`` key in CSV/JSON):

``"median"`` -- median over frames, median over tracks (museval / SiSEC 2018, the primary table):
    per track, the median over frames of the metric (NaN frames, i.e. silent reference frames,
    skipped); per seed, the median over tracks.
``"mean"`` -- median over frames, mean over tracks: the same per-track values, averaged over tracks.
``"nsdr"`` -- nSDR (MDX), mean over tracks: only for the SDR metric and only when some method's
    files carry ``"nsdr"``; a method whose score files (any of them, any seed) lack it gets NA.

A track whose value is NaN (e.g. a target silent in every frame) is skipped by the aggregation
over tracks, with a warning. "All" is, per seed, the mean of the targets' values.

Statistics
----------
Seeds are first-class: per method, the per-seed values are reported as the **mean ± standard error
over seeds** (sample standard deviation, ddof=1, / sqrt(n seeds); none for a single run) with the
number of seeds.

A :class:`~demixbench.table.model.Comparison` adds a difference row "variant - baseline" to every
table (:func:`~demixbench.table.significance.compare`; docs/statistics.md explains and justifies
each statistic):

* ``mean``: mean over seeds of the variant minus that of the baseline;
* ``design``: ``paired`` when both methods have the same seed labels (two or more: per-seed
  differences), ``unpaired`` when their seeds differ (Welch), ``pooled`` when one side is a single
  run (it borrows the other side's seed variance), ``untested`` for one run per side (seed
  variance unknown: no interval, test, mark or MDD);
* ``se``: the standard error from the seeds alone, by design;
* ``se_total``, ``df``: the standard error counting seeds and the test tracks (the variance of the
  difference over bootstrap resamples of the tracks, the same draw for every seed of both methods,
  added to the seed part) and its Welch-Satterthwaite degrees of freedom;
* ``ci_low``, ``ci_high``: the ``confidence`` t interval; ``p_value``: the two-sided t test;
* ``p_holm``: ``p_value`` Holm-adjusted across every tested difference cell of the same table (one
  aggregation); ``significant``: ``p_holm`` below 1 - ``confidence`` (marked "n.s." otherwise);
* ``mdd``: the minimum detectable difference at 80 % power (noncentral t), rendered as a row
  under each difference row;
* ``p_wilcoxon_tracks``: a secondary two-sided Wilcoxon signed-rank test over tracks of the
  seed-averaged per-track values; it ignores seed variance and never marks significance.

Provenance
----------
Every row records what it was trained on (:attr:`~demixbench.table.model.MethodRuns.trained_on`,
one of :data:`~demixbench.table.model.TRAINED_ON`: ``musdb18-train``, ``extra-data``,
``test-seen``, ``oracle``, ``undeclared``) and whether its numbers are comparable
(:data:`~demixbench.table.model.COMPARABLE`). Rows trained or selected with test tracks (``†``),
with extra data (``*``) or with undeclared training data (``?``) carry a mark in every rendered
table, explained in the caption; CSV and JSON carry ``trained_on`` and ``comparable``. A
difference row carries its sides' marks; one with a ``†`` side is not tested (outside Holm's
family).

Every method (and every seed of a method) must cover exactly the same tracks; otherwise
:func:`~demixbench.table.build.build_table` raises rather than compare numbers computed over
different test sets.

Outputs
-------
:meth:`Leaderboard.write <demixbench.table.model.Leaderboard.write>` writes ``<stem>.md``
(Markdown, one section per aggregation), ``<stem>.csv`` (tidy, one line per aggregation, row and
column), ``<stem>.json`` (DVC metrics: ``rows`` / ``differences -> row -> column -> {"mean", "se",
...}`` for the primary table, the same under ``aggregations -> key`` for the others, plus metadata;
see :meth:`~demixbench.table.model.Leaderboard.to_dict`), ``<stem>.tex`` (LaTeX ``table``
environments using booktabs) and ``<stem>.html`` (a standalone page); the stem defaults to the
metric in lower case (``sdr``, ``sar``, ...). Every caption states the aggregation and the
statistics shown. Methods' provenance notes (:attr:`~demixbench.table.model.MethodRuns.note`) are
listed under the tables and in the JSON metadata. :attr:`~demixbench.table.model.Leaderboard.data`
and :attr:`~demixbench.table.model.Leaderboard.seed_values` hold the primary table.
"""
