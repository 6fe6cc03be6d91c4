"""Open napari with the SegPL dock and the chest CT sample (image + three labelled slices),
ready to press Train.

Run with ``make run`` (or ``.venv/bin/python examples/run_napari.py``).
"""

import napari


def main() -> napari.Viewer:
    viewer = napari.Viewer(title="napari-segpl")
    viewer.open_sample("napari-segpl", "lungs_ct")
    viewer.window.add_plugin_dock_widget("napari-segpl", "SegPL")
    return viewer


if __name__ == "__main__":
    main()
    napari.run()
