"""Cross-device benchmarking of float and quantized TFLite models."""

__version__ = "0.1.0"
