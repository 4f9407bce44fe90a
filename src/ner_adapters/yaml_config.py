"""The one config loader of every recipe: YAML files checked against an ``HfArgumentParser``, then command-line
overrides, with errors naming file, line and key.

The calling convention (:func:`parse_recipe_args`): ``--config FILE [--config FILE ...] [--key value ...]``; later
files override earlier ones and the command line overrides them all. Each file's keys become ``--key value``
arguments, so a file's values get exactly the conversions, choices and checks of the command line (TRL's
``TrlParser`` turns a file into argparse *defaults* instead, which argparse never type-checks unless they are
strings: ``k_shot: 5.5`` or ``num_train_epochs: [1, 2]`` would pass as they are). :func:`check_config_file` runs
every key of a file through the parser's own conversions first, so an error names the file, line and key.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
from pathlib import Path
from typing import Any, Sequence
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


def split_config_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--config FILE`` (repeatable; also ``--config=FILE``; a first positional file is the same as one) split
    from the other arguments."""
    files, rest = [], []
    index = 0
    if argv and not argv[0].startswith("-"):
        files.append(argv[0])
        index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "--config":
            if index + 1 >= len(argv):
                raise ConfigFileError("--config needs a file")
            files.append(argv[index + 1])
            index += 2
            continue
        if arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        index += 1
    return files, rest


def yaml_to_argv(data: dict, parser: argparse.ArgumentParser, source: str, lines: dict | None = None) -> list[str]:
    """A YAML mapping as ``--key value`` arguments, so it gets the command line's conversions and choices.

    ``null`` keeps the default (an error where the default is not null); a list goes to a list field; a mapping
    (and a mapping inside a list, such as a Multi-BERT domain entry) travels as JSON, which the fields that take
    one (transformers' ``*_kwargs``, ``domains``) read. The ``env`` key is not an option: see
    :func:`parse_recipe_args`.
    """
    actions = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and action.dest != "help":
                actions.setdefault(option[2:], action)
    argv: list[str] = []
    for key, value in data.items():
        where = f"{source}:{lines[key]}" if lines and key in lines else source
        if key in RESERVED_KEYS:
            continue
        if key not in actions:
            known = sorted({a.dest for a in actions.values()})
            raise ConfigFileError(f"{where}: unknown key {key!r}; known keys: {', '.join(known)}")
        action = actions[key]
        if value is None:
            if action.default is not None:
                raise ConfigFileError(f"{where}: key {key!r} cannot be null")
            continue
        many = action.nargs in ("+", "*")
        if isinstance(value, dict):
            if many:
                raise ConfigFileError(f"{where}: key {key!r} must be a scalar or a list, got a mapping")
            argv += [f"--{key}", json.dumps(value)]
        elif isinstance(value, list):
            if not value:
                if action.default:
                    raise ConfigFileError(f"{where}: key {key!r} cannot be an empty list")
                continue
            if not many:
                raise ConfigFileError(f"{where}: key {key!r} takes one value, got a list")
            argv += [f"--{key}", *(json.dumps(v) if isinstance(v, dict) else _scalar(v) for v in value)]
        else:
            if action.nargs == "+":
                raise ConfigFileError(f"{where}: key {key!r} takes a list")
            argv += [f"--{key}", _scalar(value)]
    return argv


def _scalar(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_recipe_args(parser, argv: Sequence[str], *, default_files: Sequence[str | Path] = ()) -> tuple:
    """Parse ``--config FILE [--config FILE ...] [--key value ...]`` into ``parser``'s dataclasses.

    ``parser`` is an ``HfArgumentParser`` (``TrlParser`` included). Files are read in order, later ones
    overriding earlier ones, and the command line overrides them all; ``default_files`` are read when no file is
    given. Every file is checked key by key (:func:`check_config_file`) and parsed alone before the merge, so a
    bad key or value is reported with its file (and line). An ``env`` mapping in a file sets environment
    variables, as ``TrlParser`` does. Raises :class:`ConfigFileError` for anything wrong in the files or the
    command line, instead of argparse's usage message and exit.
    """
    files, rest = split_config_args(list(argv))
    files = files or [str(f) for f in default_files]

    def refuse(message: str):  # argparse would print usage and exit the process; a library raises
        raise ConfigFileError(message)

    parser.error = refuse
    parts: list[list[str]] = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise ConfigFileError(f"{path}: config file not found")
        check_config_file(path, parser)
        data, lines = load_mapping(path)
        for key, value in (data.get("env") or {}).items():
            os.environ[str(key)] = str(value)
        parts.append(yaml_to_argv(data, parser, str(path), lines))
    try:
        return tuple(parser.parse_args_into_dataclasses(args=[arg for part in parts for arg in part] + rest))
    except ValueError as err:  # a dataclass refusing a value, or unused arguments: name the file that brought it
        read: list[str] = []
        for name, part in zip(files, parts):  # the first file after which the files alone are refused
            read += part
            try:
                parser.parse_args_into_dataclasses(args=read)
            except ValueError as first:
                raise ConfigFileError(f"{name}: {first}") from None
        if isinstance(err, ConfigFileError):
            raise
        raise ConfigFileError(str(err)) from None  # the command-line arguments


__all__ = ["ConfigFileError", "check_config_file", "load_mapping", "parse_recipe_args", "split_config_args",
           "yaml_to_argv"]
