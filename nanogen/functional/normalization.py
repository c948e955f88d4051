"""Normalisation: batch_norm, group_norm, layer_norm, instance_norm, adain."""
__all__ = []
