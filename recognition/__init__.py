"""The parts of recognize.py (the command students type), one file each; see its docstring."""
