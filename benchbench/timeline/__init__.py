"""A profiler trace read once into a timeline that every GPU analysis reads.

Sits beneath both the runner's profile pass and the analysis layer, like
Holistic Trace Analysis's parsed trace: `reader` parses, `steps` derives the
per-step figures, `names` makes kernel names readable.
"""
