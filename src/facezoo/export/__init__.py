"""Deployment exports: ONNX graphs that carry their preprocessing metadata (onnx.py)."""
