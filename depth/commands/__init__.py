"""What each command does once its arguments are parsed.

The entry points -- ``train.py``, ``evaluate.py``, ``python -m depth.predict``, ``python -m
depth.export``, ``python -m depth.convert`` -- hold their argument parsers and import the module
here that runs them (its ``run(args)``) only after parsing, through :func:`depth.cli.parse_then_run`,
so ``--help`` (and a bad flag) answers without importing torch, timm or the networks. That function
is the one place the project defers imports; no module imports inside a function.
"""
