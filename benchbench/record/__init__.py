"""The result record: one typed, versioned model of a cell's measurement, and what derives from it.

`model` (Record and its derived figures) <- `parts` (its typed parts) <- `stats` (statistics of samples);
`upgrade` brings older schemas to the current one; `state` says whether the machine was fit to measure on;
`columns` declares how each part shows in tables, plots, the history and exports.
"""

from benchbench.record.model import (
           SCHEMA,
           STATUSES,
           InputStall,
           Record,
           RecordError,
           Run,
           base_record,
)
from benchbench.record.stats import clean_nans, summarize, throughput

__all__ = ["SCHEMA", "STATUSES", "InputStall", "Record", "RecordError", "Run", "base_record", "clean_nans",
           "summarize", "throughput"]
