"""Loading bi-encoders and cross-encoders: pretrained, local, or cost-only random weights."""
