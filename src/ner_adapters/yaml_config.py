"""YAML config files checked against an ``HfArgumentParser`` before use, with errors naming file, line and key.

TRL's ``TrlParser`` turns a YAML file into argparse *defaults*, which argparse never type-checks unless they are
strings: ``k_shot: 5.5`` or ``num_train_epochs: [1, 2]`` are accepted as they are, a bad string value exits the
process with a usage message that does not name the file, and an unknown key is reported without its file.
:func:`check_config_file` runs every key of a file through the parser's own conversions first.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any
from .errors import ConfigFileError  # noqa: F401  (re-exported: raised here)

#: Keys TrlParser consumes itself (environment variables to set).
RESERVED_KEYS = ("env",)


def load_mapping(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML file's top-level mapping and the (1-based) line of each key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigFileError(f"{where}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigFileError(f"{path}:1: the top level must be a mapping of keys to values")
    lines = {key.value: key.start_mark.line + 1 for key, _ in node.value if hasattr(key, "value")}
    return data, lines


class _Raising(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit the process
        raise ConfigFileError(message)


def check_config_file(path: str | Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Check every key of a YAML config against ``parser`` (an ``HfArgumentParser``): unknown keys, lists for
    single values, and values the parser's own type conversion or choices refuse raise :class:`ConfigFileError`
    naming the file, the line and the key. Returns the mapping."""
    data, lines = load_mapping(path)
    actions = {}  # by option name: a bool field also has a "--no_<field>" action with the same dest
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and action.dest != "help":
                actions.setdefault(option[2:], action)
    for key, value in data.items():
        where = f"{path}:{lines.get(key, '?')}"
        if key in RESERVED_KEYS:
            continue
        if key not in actions:
            close = difflib.get_close_matches(str(key), [k for k in actions if "-" not in k], n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigFileError(f"{where}: unknown key {key!r}{hint}")
        action = actions[key]
        if value is None or isinstance(value, dict) or value == []:
            continue  # null keeps the default; mappings are JSON-typed fields the parser handles itself
        many = action.nargs in ("+", "*")
        if isinstance(value, list) and not many:
            raise ConfigFileError(f"{where}: key {key!r} takes one value, got a list")
        values = value if isinstance(value, list) else [value]
        probe = _Raising(add_help=False)
        probe.add_argument(f"--{key}", type=action.type, choices=action.choices, nargs=action.nargs,
                           **({"const": action.const} if action.nargs == "?" else {}))
        try:
            probe.parse_args([f"--{key}", *(str(v).lower() if isinstance(v, bool) else str(v) for v in values)])
        except ConfigFileError as err:
            raise ConfigFileError(f"{where}: key {key!r}: {err}") from None
    return data


__all__ = ["ConfigFileError", "check_config_file", "load_mapping"]
