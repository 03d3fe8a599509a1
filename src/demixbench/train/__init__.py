"""The training stage (workflow/rules/train.smk): ``train_model``.

- ``config``: ``TrainConfig``, ``GANConfig``, ``PRECISIONS``.
- ``sampler``: random chunks of the decoded cache (``ChunkSampler``, ``BatchLoader``).
- ``loop``: ``train()``, the loop and its parts.
- ``validate``: validation loss and nSDR per target.
- ``state``: the rolling state that lets a killed run resume.
- ``history``: ``history.csv`` and its plot.
- ``distributed``: torchrun launch and the process group.
- ``worker``: what every torchrun worker runs (``python -m demixbench.train ARGS.json``).
"""
