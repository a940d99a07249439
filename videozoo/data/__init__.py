"""Data: clip sampling, transforms, dataset lists, the synthetic generator and the input config."""
