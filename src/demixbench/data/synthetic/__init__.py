"""A deterministic synthetic MUSDB18: what the workflow needs at DAG build (``SyntheticSpec``,
``track_names``) is re-exported here from the light ``spec`` module."""

from demixbench.data.synthetic.spec import SyntheticSpec, track_names

__all__ = ["SyntheticSpec", "track_names"]
