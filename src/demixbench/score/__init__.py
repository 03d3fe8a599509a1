"""The scoring stage (workflow/rules/score.smk): ``score_track``.

- ``scorefile``: ``METRICS`` and the museval/SiSEC JSON score files (write, find, read). Light.
- ``track``: what rule score_track runs (``score_track``, ``ScoringConfig``): one track's estimates
  scored (museval or the fast exact backend, ``score_arrays`` in memory) and the nSDR.
- ``bss_eval``: the fast exact re-implementation of museval's BSS Eval v4 (numpy, no torch).
- ``bss_eval_torch``: the same with torch, for a GPU (``scoring.device``); torch imported on use.
"""
