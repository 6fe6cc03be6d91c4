"""napari-segpl: semi-supervised CT/MRI segmentation from a few labelled slices (SegPL).

Importing the package stays cheap (no torch, no napari): napari loads the plugin's
commands lazily from ``napari.yaml``, and the command line imports what it needs.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
