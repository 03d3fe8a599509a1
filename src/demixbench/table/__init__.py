"""The table stage (workflow/rules/table.smk and the ``demixbench table`` command): leaderboard
tables (SDR, ISR, SIR or SAR) from per-track museval / SiSEC score files
(:mod:`demixbench.score.scorefile`; one directory of score files is one run, one seed, of a method).

Modules
-------
``runs``
    read one run: per-track medians over frames of a metric, per-track nSDR (``track_frame_medians``).
``stats``
    aggregation over tracks, mean ± s.e. over seeds, paired bootstrap interval, Wilcoxon p-value.
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
table, with

* ``mean``: mean over seeds of the variant minus that of the baseline;
* ``se``: sqrt(se_variant² + se_baseline²), the seed-to-seed standard error of the difference (a
  single run's missing s.e. counts as 0; NaN when both are single runs);
* ``ci_low``, ``ci_high``: a **paired bootstrap percentile interval** (default 95 %, 2000
  resamples, random seed 0; :func:`~demixbench.table.stats.paired_bootstrap_ci`). Each resample
  draws the test tracks with replacement -- the same tracks for both methods (paired) -- and,
  independently for each method, its seeds with replacement (a single run stays itself), then
  recomputes the difference with the table's own aggregation: per resampled seed the median (or
  mean) over the resampled tracks of the per-track values, the mean over seeds, variant minus
  baseline; All = mean over targets. The interval holds the bootstrap distribution's central
  ``confidence`` mass. Percentile intervals are not guaranteed to contain the estimate (they do in
  practice);
* ``significant``: False when the interval contains 0 (marked "n.s." in the text tables), True
  otherwise, NA when the interval is undefined;
* ``p_value``: two-sided **Wilcoxon signed-rank test** (:func:`scipy.stats.wilcoxon`, default
  options) over tracks of the per-track values averaged over seeds, variant vs baseline; for All,
  the per-track mean of the targets (:func:`~demixbench.table.stats.paired_wilcoxon`). Tracks with
  a NaN on either side are dropped; NaN when no track differs. For the "median" and "mean" tables
  the per-track values, hence the p-values, are the same. The test is about the per-track paired
  differences while the interval is about the difference of the aggregates (e.g. of two medians
  over tracks), so the two can disagree; significance is decided by the interval.

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
