"""User space front ends: the typer CLI, the prompt-toolkit shell and rich rendering."""

__version__ = "0.1.0"
