"""The training stage (workflow/rules/train.smk): ``train_model``.

- ``config``: ``TrainConfig``, ``GANConfig``, ``PRECISIONS``.
- ``sampler``: random chunks of the decoded cache (``ChunkSampler``, ``BatchLoader``).
- ``parts``: what a run builds before its first step (``Parts``: model, optimisers, scheduler,
  discriminator, mixed precision) and the DDP wrapping.
- ``loop``: ``train()`` and its steps (discriminator step, generator loss, optimiser step, epoch end).
- ``validate``: validation loss and nSDR per target.
- ``state``: the rolling state that lets a killed run resume.
- ``history``: ``history.csv`` and its plot.
- ``telemetry``: what a run reports while it trains (``Telemetry``: step and epoch scalars).
- ``tracking``: where the scalars, audio and images go (``Tracker``, ``DVCLiveTracker``,
  ``NullTracker``, ``MultiTracker``, ``TRACKERS``, ``TrackingConfig``) and the system metrics.
- ``trackers``: the optional trackers (``TensorBoardTracker``, ``WandbTracker``, ``MLflowTracker``).
- ``snapshots``: audio snapshots and spectrograms of fixed validation excerpts (``Snapshots``).
- ``runstatus``: ``progress.json`` (``ProgressWriter``), where a run stands.
- ``distributed``: torchrun launch and the process group.
- ``worker``: what every torchrun worker runs (``python -m demixbench.train ARGS.json``).
"""
