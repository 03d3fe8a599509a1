"""The scoring stage (workflow/rules/score.smk): ``score_run``.

- ``stage``: what rule score_run runs (``score_run``, ``RunScoring``): every test track of one run,
  in a pool, resumable per track (fingerprinted staging in the run's work directory).
- ``pool``: the process pool, progress bar and per-track outcomes (``ScoreSummary``) that the stage
  and ``batch`` share. Light.
- ``batch``: ``demixbench score``, a directory of estimates against MUSDB18(-HQ) or a decoded cache.
- ``scorefile``: ``METRICS`` and the museval/SiSEC JSON score files (write, find, read). Light.
- ``track``: one track's estimates scored (``score_track``, ``ScoringConfig``; museval or the fast
  exact backend, ``score_arrays`` in memory) and the nSDR.
- ``bss_eval``: the fast exact re-implementation of museval's BSS Eval v4 (numpy, no torch).
- ``bss_eval_torch``: the same with torch, for a GPU (``scoring.device``); torch imported on use.
"""
