"""Networks built from specs (torch): layers, the builder, BatchNorm folding, weight conversion and safetensors I/O.

Imports only the torch-free core above it and torch.
"""
