"""The data stage (workflow/rules/data.smk): acquire, verify, decode and describe MUSDB18.

- ``layout``: sources, stems, subsets and where a track's files live; lists tracks without
  reading audio. Light (stdlib, numpy and yaml only): the workflow imports it when it builds the DAG.
- ``musdb18``: the official MUSDB18 track names.
- ``probe``: header-only checks of audio files (ffprobe, the wav header).
- ``verify``: counts, stems, lengths and fingerprint of a dataset copy; its report. Light.
- ``acquire``: generate, download or extract a dataset into place, verified (``ingest``).
- ``synthetic``: the deterministic synthetic MUSDB18 (``synthetic.spec`` is light).
- ``decode``: decode a track once into the float32 cache, with its mixture check.
- ``cache``: read and write the decoded cache (``load_decoded``, ``NpyReader``).
- ``stats``: per-frequency input statistics of the training mixtures.
- ``audiofile``: any audio file decoded block by block into an on-disk array (``demixbench
  separate``; not a module of the data stage's rules).
"""
