"""Shell commands, one module each, declared once in `commands.registry`."""
