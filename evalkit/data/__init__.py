"""Datasets: built-in collections, BEIR folders on disk, BEIR zips and ir_datasets
downloads, all validated into one :class:`~evalkit.types.Dataset` shape."""

from evalkit.data.beir import load_beir_folder
from evalkit.data.sources import content_digest, load_dataset

__all__ = ["content_digest", "load_beir_folder", "load_dataset"]
