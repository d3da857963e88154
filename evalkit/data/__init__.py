"""Datasets: BEIR folders on disk, BEIR zips and ir_datasets downloads, all validated."""

from evalkit.data.beir import load_beir_folder
from evalkit.data.sources import load_dataset

__all__ = ["load_beir_folder", "load_dataset"]
