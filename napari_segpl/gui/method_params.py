"""The chosen method's own parameters (``Method.params``): one small group box each, rebuilt
when the method changes, so a new baseline's parameters appear in the dock without GUI code.

Widgets follow the ``Param``: a whole-number default gives a spin box, a float default a float
spin box limited to [low, high] (so an out-of-range value cannot be entered), a string default
a combo box of ``options()``. The help text is the tooltip. A choice whose options are method
names (the ensemble's ``member``) passes that method's own parameters through (see
``Ensemble.check_params``), so they are shown in a second group under it.

What the user sets is remembered per method for the life of the form: switching to another
method and back, or to another preset, never resets it; *Defaults* does. A member's parameters
share the memory of that method (FixMatch's tau is the same whether FixMatch runs alone or in
an ensemble).
"""

from __future__ import annotations

import math

from magicgui.widgets import ComboBox, Container, FloatSpinBox, SpinBox
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from ..engine import METHODS
from ..engine.methods import Param

#: Spin-box limit for an unbounded side (``Param.high`` inf): wide enough for any weight, and
#: short enough that the box still fits the narrow dock.
UNBOUNDED = 1000.0

Value = float | int | str
ParamWidget = ComboBox | FloatSpinBox | SpinBox


def is_method_choice(param: Param) -> bool:
    """A string choice among registered methods (the ensemble's member)."""
    options = param.options() if isinstance(param.default, str) else ()
    return bool(options) and set(options) <= set(METHODS)


def decimals(param: Param) -> int:
    """The fewest decimals (2 to 6) that show the default and the finite bounds exactly
    (mean-teacher's decay may be 0.9999)."""
    values = [float(v) for v in (param.default, param.low, param.high) if math.isfinite(v)]
    for places in range(2, 7):
        if all(abs(round(v, places) - v) < 1e-12 for v in values):
            return places
    return 6


def step(param: Param, places: int) -> float:
    """One tenth of the default's order of magnitude (0.95 -> 0.01, 30 -> 1), never finer than
    the shown decimals."""
    size = abs(float(param.default))
    order = math.floor(math.log10(size)) - 1 if size > 0 else -2
    return max(10.0**order, 10.0**-places)


def limits(param: Param) -> tuple[float, float]:
    """[low, high] with an unbounded side capped at ``UNBOUNDED`` (or ten times the default)."""
    cap = max(UNBOUNDED, 10 * abs(float(param.default)))
    low = param.low if math.isfinite(param.low) else -cap
    high = param.high if math.isfinite(param.high) else cap
    return low, high


def make_widget(name: str, param: Param, value: Value) -> ParamWidget:
    """One widget for one parameter, showing ``value`` (checked by the caller)."""
    label = name.replace("_", " ")
    if isinstance(param.default, str):
        options = param.options()
        # a method is shown by its title (as in the method list); the value stays its name
        choices = [(METHODS[o].title, o) for o in options] if is_method_choice(param) else options
        widget: ParamWidget = ComboBox(label=label, choices=list(choices), value=value)
        # may be narrower than its longest title, as params.py's ``let_shrink`` (not imported:
        # params.py imports this module)
        widget.native.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        widget.native.setMinimumContentsLength(6)
    elif isinstance(param.default, int):
        low, high = limits(param)
        lo, hi = max(math.ceil(low), -(2**31)), min(math.floor(high), 2**31 - 1)
        widget = SpinBox(label=label, min=lo, max=hi, value=int(value))
    else:
        places = decimals(param)
        widget = FloatSpinBox(label=label, step=step(param, places))
        widget.native.setDecimals(places)  # before the range: Qt rounds it to the decimals
        widget.min, widget.max = limits(param)
        widget.value = float(value)
    bounds = "" if isinstance(param.default, str) else f", {param.low:g} to {param.high:g}"
    widget.tooltip = f"{param.help} (default {param.default}{bounds})"
    return widget


class ParamGroup(QGroupBox):
    """A "<title> parameters" box: a form of one method's parameters and a *Defaults* button."""

    def __init__(self, method: str, title: str, values: dict[str, Value]) -> None:
        super().__init__(title)
        self.method = method
        self.params = params = METHODS[method].params
        self.widgets = {n: make_widget(n, p, values[n]) for n, p in params.items()}
        self.form = Container(widgets=list(self.widgets.values()))
        _, top, _, bottom = self.form.margins
        self.form.margins = (0, top, 0, bottom)
        self.defaults = QPushButton("Defaults")
        self.defaults.setToolTip("Set these parameters back to the method's defaults")
        self.defaults.clicked.connect(self.reset)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(buttons)

    def values(self) -> dict[str, Value]:
        return {name: widget.value for name, widget in self.widgets.items()}

    def reset(self) -> None:
        for name, widget in self.widgets.items():
            widget.value = self.params[name].default


class MethodParams(QWidget):
    """The chosen method's parameter group (and its member method's); empty for a method
    without parameters. ``values()`` is what goes into ``TrainConfig.extra``."""

    #: the groups were rebuilt (another method or member): the form may re-check what applies
    rebuilt = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.method: str | None = None
        self.groups: list[ParamGroup] = []
        #: by method name: the values last set, so switching away and back keeps them
        self.memory: dict[str, dict[str, Value]] = {}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    # ------------------------------------------------------------ building
    def show_method(self, name: str) -> None:
        """Rebuild the groups for method ``name`` (its member's too, for an ensemble)."""
        self.method = name
        self._clear(self.groups)
        self.groups = []
        group = self._add_group(name, f"{METHODS[name].title} parameters")
        choice = self._member_widget(group)
        if choice is not None:
            choice.changed.connect(self._member_changed)
            self._add_group(str(choice.value), self._member_title(str(choice.value)))
        self.setVisible(bool(self.groups))
        self.rebuilt.emit()

    @staticmethod
    def _member_title(member: str) -> str:
        return f"{METHODS[member].title} parameters (each member)"

    def _add_group(self, name: str, title: str) -> ParamGroup | None:
        params = METHODS[name].params
        if not params:
            return None
        remembered = self.memory.setdefault(name, {})
        values = {n: self._valid(n, p, remembered.get(n, p.default)) for n, p in params.items()}
        group = ParamGroup(name, title, values)
        for param_name, widget in group.widgets.items():
            widget.changed.connect(self._remember(name, param_name, widget))
        self._layout.addWidget(group)
        self.groups.append(group)
        return group

    @staticmethod
    def _valid(name: str, param: Param, value: Value) -> Value:
        """A remembered value, or the default if it is no longer allowed (a member method that
        is gone from the registry)."""
        try:
            return param.check(name, value)
        except ValueError:
            return param.default

    def _remember(self, method: str, name: str, widget: ParamWidget):
        def store(*_: object) -> None:
            self.memory.setdefault(method, {})[name] = widget.value

        return store

    def _member_widget(self, group: ParamGroup | None) -> ComboBox | None:
        if group is None:
            return None
        for name, param in group.params.items():
            if is_method_choice(param):
                return group.widgets[name]  # type: ignore[return-value]
        return None

    def _member_changed(self, member: str) -> None:
        """Only the member's group is rebuilt: the ensemble's own (and its focus) stay."""
        self._clear(self.groups[1:])
        self.groups = self.groups[:1]
        self._add_group(str(member), self._member_title(str(member)))
        self.rebuilt.emit()

    def _clear(self, groups: list[ParamGroup]) -> None:
        for group in groups:
            self._layout.removeWidget(group)
            group.setParent(None)
            group.deleteLater()

    # ------------------------------------------------------------ reading
    def values(self) -> dict[str, Value]:
        """Every shown parameter by name (the member's pass through the ensemble's extra)."""
        return {k: v for group in self.groups for k, v in group.values().items()}

    def runs_as(self) -> str | None:
        """The method that trains each step: the member of an ensemble, else the chosen one."""
        if self.method is None:
            return None
        for group in self.groups:
            choice = self._member_widget(group)
            if choice is not None:
                return str(choice.value)
        return self.method

    def widget(self, name: str) -> ParamWidget:
        """The widget of the parameter ``name`` (tests and scripts)."""
        for group in self.groups:
            if name in group.widgets:
                return group.widgets[name]
        raise KeyError(f"no parameter {name!r} is shown")
