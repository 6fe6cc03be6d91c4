"""``python -m benchmarks [speed|inference|accuracy|event_loop|paint_stall|dock_stall|ablation|
grid|cuda|intensity|safeguard|cohort|big_scan|uncertainty_auroc|time_to_mask|
compare_grid|compare_merge|heldout_check|method_cost|threshold_signal|layout|suggest_sim|
paired|twin_average|
dock_time_to_mask|target23|compare_summary|neighbour_check|cpu_levers|mc_brier|
components|intensity_arbiter|cut_sweep|gc_threads] ...``.

Runs one benchmark (or the two quick ones, speed and inference, with no argument). Each prints
a Markdown table to paste into RESULTS.md."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    name, rest = (argv[0], argv[1:]) if argv else ("quick", [])
    if name == "quick":
        from . import inference, speed

        return speed.main([]) or inference.main([])
    modules = {
        n: n
        for n in (
            "speed",
            "inference",
            "accuracy",
            "event_loop",
            "paint_stall",
            "dock_stall",
            "ablation",
            "grid",
            "cuda",
            "intensity",
            "safeguard",
            "cohort",
            "big_scan",
            "uncertainty_auroc",
            "time_to_mask",
            "compare_grid",
            "heldout_check",
            "cpu_levers",
            "mc_brier",
            "threshold_signal",
            "method_cost",
            "layout",
            "suggest_sim",
            "compare_merge",
            "paired",
            "twin_average",
            "dock_time_to_mask",
            "target23",
            "compare_summary",
            "neighbour_check",
            "components",
            "intensity_arbiter",
            "cut_sweep",
            "gc_threads",
        )
    }
    if name not in modules:
        print(f"unknown benchmark {name!r}; choose from quick, {', '.join(modules)}")
        return 2
    module = __import__(f"benchmarks.{modules[name]}", fromlist=["main"])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
