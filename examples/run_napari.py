"""Open napari with the SegPL chest CT sample (image + three labelled slices).

Run with ``make run`` (or ``.venv/bin/python examples/run_napari.py``).
"""

import napari


def main() -> napari.Viewer:
    viewer = napari.Viewer(title="napari-segpl")
    viewer.open_sample("napari-segpl", "lungs_ct")
    viewer.dims.ndisplay = 2
    return viewer


if __name__ == "__main__":
    main()
    napari.run()
