"""The monitor's panes; each redraws from a batch of kernel events (`update_view`)."""

from aios_shell.tui.panes.console import ConsolePane
from aios_shell.tui.panes.context import ContextPane
from aios_shell.tui.panes.processes import ProcessPane
from aios_shell.tui.panes.scheduler import SchedulerPane
from aios_shell.tui.panes.system import SystemPane
from aios_shell.tui.panes.toollog import ToolLogPane

__all__ = ["ConsolePane", "ContextPane", "ProcessPane", "SchedulerPane", "SystemPane", "ToolLogPane"]
