"""Datasets by name: bundled synthetic sets, local files, and Hugging Face datasets.

A dataset reference is written in a policy as a string (``builtin:harm-eval``,
``./my-data.jsonl``, ``hf:PKU-Alignment/BeaverTails``) or as a mapping with a split,
a revision, a field mapping and a category filter. Every loaded dataset carries the
sha256 of its bytes (or of its rows, for hub datasets) so the evidence pins it.
"""

from certify.data.load import Dataset, DatasetRef, Row, load_dataset

__all__ = ["Dataset", "DatasetRef", "Row", "load_dataset"]
