"""Two of the project's standards, checked: the engine (torch, numpy) never imports Qt or napari
(it runs in CLI jobs, Dask workers and benchmarks where no GUI exists), and no module of the
package is over 400 lines (small panels and modules others can carry on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GUI = ("qtpy", "PyQt5", "napari", "magicgui", "superqt", "vispy")


def test_no_engine_module_pulls_in_a_gui():
    code = (
        "import importlib, pkgutil, sys, napari_segpl.engine as engine\n"
        "names = [m.name for m in pkgutil.walk_packages(engine.__path__, 'napari_segpl.engine.')]\n"
        "for name in names: importlib.import_module(name)\n"
        f"print(len(names), sorted(m for m in {GUI!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, loaded = out.stdout.strip().split(" ", 1)
    assert int(count) > 20  # the walk found the engine's modules, methods included
    assert loaded == "[]"


def test_no_module_of_the_package_is_over_400_lines():
    package = Path(__file__).resolve().parents[1] / "napari_segpl"
    sizes = {
        p.relative_to(package): len(p.read_text(encoding="utf-8").splitlines())
        for p in package.rglob("*.py")
    }
    assert len(sizes) > 40
    assert {name: n for name, n in sizes.items() if n > 400} == {}
