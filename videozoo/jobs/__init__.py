"""Jobs over many videos built on the engine: evaluation and feature extraction."""
