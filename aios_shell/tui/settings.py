"""The monitor's settings: `[monitor]` in `$AIOS_HOME/config.toml`, and the remembered theme.

```toml
[monitor]
theme = "light"           # the theme when none was chosen yet

[monitor.keymap]          # binding id = key(s), comma-separated (ids: `?` in the monitor)
term = "x"
quit = "q,ctrl+q"
```

The last theme chosen (`t` or `--theme`) is remembered in `$AIOS_HOME/monitor.json` and wins over
`config.toml`; the monitor never writes `config.toml`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import themes

STATE_FILE = "monitor.json"
CONFIG_FILE = "config.toml"


@dataclass
class MonitorSettings:
    home: Path | None = None
    theme: str = themes.DEFAULT
    keymap: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # shown once as notifications

    @classmethod
    def load(cls, home: Path | None) -> MonitorSettings:
        """Read config.toml and the remembered theme; a broken file is reported, never fatal."""
        settings = cls(home=home)
        if home is None:
            return settings
        config = Path(home) / CONFIG_FILE
        section: dict = {}
        if config.is_file():
            try:
                section = tomllib.loads(config.read_text()).get("monitor", {})
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                settings.problems.append(f"{config}: {exc}")
        keymap = section.get("keymap", {})
        if isinstance(keymap, dict):
            settings.keymap = {str(k): str(v) for k, v in keymap.items()}
        settings.theme = settings._valid(section.get("theme")) or settings.theme
        state = Path(home) / STATE_FILE
        if state.is_file():
            try:
                remembered = json.loads(state.read_text()).get("theme")
            except (OSError, ValueError, AttributeError) as exc:
                settings.problems.append(f"{state}: {exc}")
            else:
                settings.theme = settings._valid(remembered) or settings.theme
        return settings

    def _valid(self, name: object) -> str | None:
        if name is None:
            return None
        if isinstance(name, str) and name in themes.names():
            return name
        self.problems.append(f"unknown theme {name!r} (themes: {', '.join(themes.names())})")
        return None

    def remember_theme(self, name: str) -> None:
        """Save the chosen theme for next time (best effort: a read-only home is not an error)."""
        self.theme = name
        if self.home is None:
            return
        try:
            Path(self.home).mkdir(parents=True, exist_ok=True)
            (Path(self.home) / STATE_FILE).write_text(json.dumps({"theme": name}) + "\n")
        except OSError as exc:
            self.problems.append(f"cannot remember the theme: {exc}")
