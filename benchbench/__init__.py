"""benchbench: training-speed profiling and benchmarking for segmentation models."""

__version__ = "0.1.0"
