"""Semantic segmentation: the U-Net, its weights and sidecar, ONNX, batched inference, and the
published package's compatible API (SegmentationInference).
"""
