"""Method and parameters: the method (from the engine's registry), a preset, and the form
(``params.py``), with the chosen method's own parameters below it (``method_params.py``)."""

from __future__ import annotations

from qtpy.QtWidgets import QGroupBox, QVBoxLayout

from .params import ParameterForm
from .state import DockState


class MethodPanel(QGroupBox):
    """The training parameter form in its own box; ``form.config()`` gives the TrainConfig."""

    def __init__(self, state: DockState) -> None:
        super().__init__("Method")
        self.state = state
        self.form = ParameterForm()
        QVBoxLayout(self).addWidget(self.form)
        state.busy_changed.connect(self._busy)

    def _busy(self) -> None:
        # the run keeps the configuration it started with; the form stays editable for the next
        self.form.setToolTip("Changes apply to the next run" if self.state.training else "")
