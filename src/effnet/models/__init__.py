"""Networks built from specs, and the weights that fill them.

- ``layers`` and ``efficientnet``: the layers and the builder (a module from a spec); ``fold``: BatchNorm folding.
- ``factory``: ``create_model`` (``pretrained=``), ``compound_model``, ``load_pretrained``, ``save_pretrained``.
- ``convert``: one module per weight layout, in one registry; ``convert.checkpoint`` converts a file or reference.
- ``weight_files``: reading and writing weight files; ``pretrained``: the table of pretrained weights and the one
  place their preprocessing is derived; ``hub``: ``hf-hub:`` / ``torchvision:`` references; ``download``: the
  downloads.

Imports only the torch-free core above it, torch, and (inside functions) the optional libraries it reads.
"""
