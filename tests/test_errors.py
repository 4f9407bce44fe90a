"""One error family: every error the toolkit raises on purpose is a NerAdaptersError and the builtin it specialises."""

import importlib
import inspect

import pytest

import ner_adapters
from ner_adapters import errors

# Where each error is raised, as users import it today: the names stay, the classes are the family's.
RAISED_IN = {
    "ner_adapters.spans": ["TagError", "TagRepairWarning"],
    "ner_adapters.hub.layout": ["ArtifactError"],
    "ner_adapters.episodes": ["EpisodeSamplingError"],
    "ner_adapters.data.sources": ["UnknownDatasetError"],
    "ner_adapters.data.schema": ["DataFormatError"],
    "ner_adapters.yaml_config": ["ConfigFileError"],
    "ner_adapters.resume": ["TrainingInterrupted"],
    "ner_adapters.models": ["ModelNotFoundError"],
    "ner_adapters.cllmfs.entity_types": ["EntityTypeError"],
    "ner_adapters.cllmfs.artifact": ["AdapterMismatchError"],
    "ner_adapters.multibert.model": ["MultiBertError", "CoreMismatchError"],
    "ner_adapters.multibert.config": ["ConfigError"],
}
BUILTIN = {"TagError": ValueError, "ArtifactError": ValueError, "EpisodeSamplingError": ValueError,
           "UnknownDatasetError": KeyError, "DataFormatError": ValueError, "ConfigFileError": ValueError,
           "TrainingInterrupted": RuntimeError, "ModelNotFoundError": OSError, "EntityTypeError": ValueError,
           "AdapterMismatchError": ValueError, "MultiBertError": ValueError, "ConfigError": ValueError,
           "CoreMismatchError": ValueError}


@pytest.mark.parametrize("module", sorted(RAISED_IN))
def test_each_module_raises_the_family_classes(module):
    loaded = importlib.import_module(module)
    for name in RAISED_IN[module]:
        assert getattr(loaded, name) is getattr(errors, name), f"{module}.{name} is a second class"


def test_every_error_is_a_ner_adapters_error_and_its_builtin():
    for name, builtin in BUILTIN.items():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.NerAdaptersError) and issubclass(cls, builtin), name
    assert issubclass(errors.TagRepairWarning, errors.NerAdaptersWarning)
    assert issubclass(errors.TagRepairWarning, UserWarning)
    assert ner_adapters.NerAdaptersError is errors.NerAdaptersError


def test_no_exception_class_is_defined_outside_errors_py():
    import ast
    from pathlib import Path

    package = Path(ner_adapters.__file__).parent
    strays = []
    for path in package.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception", "Warning", "Interrupted"))
                    for b in node.bases):
                strays.append(f"{path.relative_to(package)}:{node.lineno} {node.name}")
    assert not strays, f"exception classes outside ner_adapters/errors.py: {strays}"


def test_messages_keep_their_fields():
    err = errors.DataFormatError("bad tag 'X-PER'", path="train.conll", line=12)
    assert str(err) == "train.conll:12: bad tag 'X-PER'" and (err.path, err.line) == ("train.conll", 12)
    assert str(errors.UnknownDatasetError("unknown dataset 'wnut-17'; did you mean 'wnut17'?")).startswith("unknown")
    assert errors.ConfigFileError is errors.ConfigError
    with pytest.raises(errors.NerAdaptersError):
        raise errors.CoreMismatchError("another core")
    assert inspect.getdoc(errors.CoreMismatchError)
