"""The separation stage (workflow/rules/separate.smk): ``separate_track`` and ``separate_oracle``.

- ``track``: what rule separate_track runs (``separate_track``, ``SeparationConfig``): a decoded
  mixture through a checkpoint into estimate files.
- ``apply``: segment-wise separation of a long mixture with a model (overlap-add, streaming).
- ``wiener``: the multichannel Wiener filter applied to a model's magnitude estimates.
- ``oracles``: MIX, IRM, IBM and MWF oracle estimates from the true stems (``separate_oracle``).
- ``estimates``: the estimate files ``<target>.wav`` (write, stream, read back for scoring). Light.
"""
