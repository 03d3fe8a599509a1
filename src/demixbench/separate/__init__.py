"""The separation stage (workflow/rules/separate.smk): ``separate_track``, ``separate_oracle``, and
the methods the pipeline does not train (``import_estimates``, ``export_mixture``, ``run_command``,
``convert_checkpoint``).

- ``track``: what rule separate_track runs (``separate_track``, ``SeparationConfig``): a decoded
  mixture through a checkpoint into estimate files.
- ``apply``: segment-wise separation of a long mixture with a model (overlap-add, streaming).
- ``wiener``: the multichannel Wiener filter applied to a model's magnitude estimates.
- ``oracles``: MIX, IRM, IBM and MWF oracle estimates from the true stems (``separate_oracle``).
- ``estimates``: the estimate files ``<target>.wav`` (write, stream, read back for scoring), and
  estimates made elsewhere checked and copied in (``import_estimates``). Light.
- ``external``: command templates and folders of estimates of config ``external``. Light (stdlib):
  the workflow imports it when it builds the DAG.
- ``files``: ``demixbench separate``: audio files through a run, checkpoint or release file.
"""
