"""The live monitor (`top`): a Textual app over the running kernel, fed by its events."""

from aios_shell.tui.app import MonitorApp, make_monitor

__all__ = ["MonitorApp", "make_monitor"]
