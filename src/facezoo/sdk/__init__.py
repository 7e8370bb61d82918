"""Deployment SDK: face detection, 5-point alignment, embedding, galleries and serving."""
