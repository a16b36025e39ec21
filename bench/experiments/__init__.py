"""Experiments: questions answered with trained models and labelled data, not latency sweeps.

`fashion_mnist`: post-training quantization and quantization-aware training (`qat`,
`qat_worker`) of a small depthwise-separable CNN trained here on Fashion-MNIST, evaluated on
the 10,000 test images with the TFLite interpreter (a small analogue of the quantization
whitepaper's ImageNet accuracy findings).
"""
