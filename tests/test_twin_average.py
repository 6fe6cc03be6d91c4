"""The twin-average candidate of RESULTS.md (ee) rule 2: the mean of two members' sigmoid
probabilities, cut as the engine cuts a prediction (hand examples)."""

import numpy as np

from benchmarks.twin_average import averaged_labels, reproduced, rule4


def test_average_of_two_members_cut_at_half():
    # two classes, four voxels: (semi, twin) per class
    semi = np.array([[0.9, 0.9, 0.2, 0.6], [0.1, 0.2, 0.9, 0.7]], np.float16)
    twin = np.array([[0.3, 0.0, 0.1, 0.1], [0.1, 0.9, 0.2, 0.8]], np.float16)
    # means: class 1 [0.6, 0.45, 0.15, 0.35], class 2 [0.1, 0.55, 0.55, 0.75]
    assert averaged_labels(semi, twin, nested=False).tolist() == [1, 2, 2, 2]
    # nested: the highest class above 0.5
    assert averaged_labels(semi, twin, nested=True).tolist() == [1, 2, 2, 2]
    # a voxel only one member calls foreground at full confidence sits at 0.5: not kept
    only_one = averaged_labels(np.array([[1.0]]), np.array([[0.0]]), nested=False)
    assert only_one.tolist() == [0]


def _run(dataset, guarded, safeguard, method="segpl"):
    return dict(dataset=dataset, method=method, supervised=0.5, guarded=0.5 + guarded / 100,
                safeguard=0.5 + safeguard / 100)  # fmt: skip


def test_rule4_compares_the_lever_with_the_default_on_the_same_runs():
    # tuning set, 12 runs: the lever lifts the one losing run (-3 -> -1) and keeps a +4 mean
    tuning = [_run("lungs_ct", 4.5, 5.0) for _ in range(11)] + [_run("lungs_ct", -1.0, -3.0)]
    # validation set: the lever adds a run below -2 and a lower worst run
    validation = [_run("abdomen_organs_ct", 5.0, 5.0) for _ in range(11)]
    validation.append(_run("abdomen_organs_ct", -2.5, -1.0))
    got = {(v["set"], v["method"]): v for v in rule4(tuning + validation)}
    tune, val = got["tuning", "segpl"], got["validation", "segpl"]
    assert tune["verdict"] == "passes (a), (b), (c)"
    assert tune["runs"] == 12 and tune["lever_below"] == 0 and tune["default_below"] == 1
    assert abs(tune["lever_mean"] - (11 * 4.5 - 1.0) / 12) < 1e-9
    assert abs(tune["lever_worst"] + 1.0) < 1e-9 and abs(tune["default_worst"] + 3.0) < 1e-9
    assert val["verdict"] == "fails (a, b)"
    # a mean under the 3-point floor fails (c); fewer than 12 runs decide nothing
    low = [_run("lungs_ct", 2.0, 2.0, "segpl-vi") for _ in range(12)]
    assert rule4(low)[0]["verdict"] == "fails (c)"
    assert rule4(low[:11])[0]["verdict"].startswith("nothing decided (11 runs")


def test_a_run_is_reliable_only_when_both_members_reproduce_their_rows():
    assert reproduced(0.511, 0.511, 0.492, 0.492)
    assert reproduced(0.511, 0.507, 0.492, 0.496)  # within half a point
    assert not reproduced(0.511, 0.396, 0.492, 0.492)  # (gg): organs CT K1 s0, SegPL's ties
    assert not reproduced(0.5, 0.5, 0.49, 0.50)  # the twin's own ties count too


def test_rule4_scores_the_average_alone_when_asked():
    # (hh) rule 1: the average without the class-lost check; the default fell back to +0.0
    runs = [dict(_run("abdomen_organs_ct", 0.0, 0.0), average=0.5 + 0.4) for _ in range(3)]
    alone = rule4(runs, min_runs=3, lever_key="average")[0]
    assert alone["verdict"] == "passes (a), (b), (c)" and abs(alone["lever_mean"] - 40) < 1e-9
    assert rule4(runs, min_runs=3)[0]["verdict"] == "fails (c)"  # behind the safeguard: +0.0
    assert rule4(runs[:2], min_runs=3, lever_key="average")[0]["verdict"].startswith("nothing")


def test_the_floor_compares_worst_runs_only_below_minus_two():
    # (ii) rule 1: the default fell back to +0.0, the average -0.8: inside the floor
    runs = [dict(_run("abdomen_organs_ct", 0.0, 0.0), average=0.5 + d / 100) for d in (9, 9, -0.8)]
    assert rule4(runs, 3, "average")[0]["verdict"] == "fails (b)"  # (hh)'s (b)
    assert rule4(runs, 3, "average", floor=True)[0]["verdict"] == "passes (a), (b), (c)"
    runs[2]["average"] = 0.5 - 0.025  # -2.5: below both the default's worst and -2
    assert rule4(runs, 3, "average", floor=True)[0]["verdict"] == "fails (a, b)"
