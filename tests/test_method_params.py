"""A method's own parameters (``Method.params``): checked, defaulted, and set from the CLI."""

from __future__ import annotations

import pytest
from test_cli import CT, CT_SPARSE

from napari_segpl.cli import _config, build_parser, main
from napari_segpl.engine import ConfigError, TrainConfig
from napari_segpl.engine.methods import METHODS, Param
from napari_segpl.engine.methods.supervised import Supervised


class WithParams(Supervised):
    """Supervised training with two made-up parameters (not registered)."""

    name = "with-params"
    params = {
        "tau": Param(0.95, "a confidence", 0.0, 1.0),
        "members": Param(5, "a count", 1, 20),
    }


def test_defaults_values_and_errors():
    assert WithParams.check_params({}) == {"tau": 0.95, "members": 5}
    assert WithParams.check_params({"tau": "0.5", "members": "3"}) == {"tau": 0.5, "members": 3}
    with pytest.raises(ConfigError, match=r"tau must be in \[0, 1\], got 1.5"):
        WithParams.check_params({"tau": 1.5})
    with pytest.raises(ConfigError, match="members must be a whole number"):
        WithParams.check_params({"members": "2.5"})
    with pytest.raises(ConfigError, match="tau must be a number"):
        WithParams.check_params({"tau": "high"})
    with pytest.raises(ConfigError, match=r"no parameter lambda \(it has: members, tau\)"):
        WithParams.check_params({"lambda": 1})


def test_a_method_reads_its_parameter_from_the_configuration():
    method = WithParams(TrainConfig(extra={"tau": 0.8}, base_channels=4, depth=2), 1)
    assert method.param("tau") == 0.8 and method.param("members") == 5


def test_validate_refuses_a_parameter_the_method_does_not_have():
    with pytest.raises(ConfigError, match="segpl has no parameter tau"):
        TrainConfig(method="segpl", extra={"tau": 0.9}).validate()


def test_cli_param_reaches_the_configuration(monkeypatch, capsys):
    monkeypatch.setitem(METHODS, "with-params", WithParams)
    parser = build_parser()
    args = parser.parse_args(["train", "i.nii", "l.nii", "--model", "m.pt", "--method",
                              "supervised", "--param", "tau=0.5"])  # fmt: skip
    args.method = "with-params"  # argparse's choices were fixed when the parser was built
    assert _config(args, "ct").extra == {"tau": 0.5}
    bad = ["train", str(CT), str(CT_SPARSE), "--model", "m.pt", "--param", "tau"]
    assert main(bad) == 2 and "--param expects NAME=VALUE" in capsys.readouterr().err
