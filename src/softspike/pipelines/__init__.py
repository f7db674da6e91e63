"""Placing a network's stages on devices and running them on torch.distributed."""
