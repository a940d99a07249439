"""The inference engine: decode -> views -> batched forward -> scores, written once."""
