"""Every error and warning ner-adapters raises, in one family.

Catch :class:`NerAdaptersError` to handle anything the toolkit rejects; each subclass is also the builtin it
specialises (``ValueError``, ``KeyError``, ``OSError``...), so code written against the builtins keeps working.
The modules that raise them re-export their names (``ner_adapters.data.schema.DataFormatError`` is this
``DataFormatError``). Light on purpose: no torch, no Hub client.
"""

from __future__ import annotations

import signal
from pathlib import Path


class NerAdaptersError(Exception):
    """Base of every error ner-adapters raises on purpose."""


class NerAdaptersWarning(UserWarning):
    """Base of every warning ner-adapters issues."""


# --- data -----------------------------------------------------------------------------------------------------


class DataFormatError(NerAdaptersError, ValueError):
    """Input data that cannot be read; the message names the file and line (or the field)."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = str(path) if path is not None else None
        self.line = line


class UnknownDatasetError(DataFormatError, KeyError):
    """A dataset name that is neither registered, nor a local path, nor reachable on the Hub.

    A ``KeyError`` (what ``get_spec`` always raised) and a ``ValueError`` (what the recipes and the CLI print
    as one line); ``str()`` is the plain message, not ``KeyError``'s quoted repr.
    """

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class TagError(NerAdaptersError, ValueError):
    """A tag sequence that cannot be read (unknown prefix or scheme, or an invalid transition in strict mode).

    ``position`` is the index of the offending tag, so callers (readers) can turn it into a file line.
    """

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position


class TagRepairWarning(NerAdaptersWarning):
    """An ``I-`` tag with no entity before it was read as the start of a new entity (as seqeval does)."""


class EpisodeSamplingError(NerAdaptersError, ValueError):
    """The data cannot give every type K to 2K mentions (too few or too crowded sentences)."""


class EntityTypeError(NerAdaptersError, ValueError):
    """Entity-type descriptions that cannot be used: an empty description, or one for a label the data lacks."""


# --- configuration --------------------------------------------------------------------------------------------


class ConfigError(NerAdaptersError, ValueError):
    """A config file or command line that cannot be used; the message names the file, the line and the key."""


#: The name the YAML loader has always raised; the same class.
ConfigFileError = ConfigError


# --- models and artifacts -------------------------------------------------------------------------------------


class ModelNotFoundError(NerAdaptersError, OSError):
    """A model that is neither a folder, nor reachable on the Hub, nor packaged."""


class ArtifactError(NerAdaptersError, ValueError):
    """A folder or repo that is not a ner-adapters artifact, or artifacts that do not fit together."""


class AdapterMismatchError(NerAdaptersError, ValueError):
    """An adapter used with a base model or core it was not trained on (CLLMFS or Multi-BERT), or a file that
    is not an adapter of the kind asked for."""


class MultiBertError(NerAdaptersError, ValueError):
    """A wrong or missing domain, scheme or adapter, or a saved set that does not fit its core."""


class CoreMismatchError(AdapterMismatchError, MultiBertError):
    """A saved Multi-BERT set loaded onto a core whose weights differ from the one it was trained on."""


# --- training -------------------------------------------------------------------------------------------------


class TrainingInterrupted(NerAdaptersError, RuntimeError):
    """Training stopped on a signal after writing a checkpoint; rerun with resume to continue."""

    def __init__(self, signum: int, checkpoint: str | None):
        name = signal.Signals(signum).name
        super().__init__(f"training interrupted by {name}; checkpoint {checkpoint or '(none written)'}; "
                         "run again with resume_from_checkpoint to continue from it")
        self.signum, self.checkpoint = signum, checkpoint

    @property
    def exit_code(self) -> int:
        """The shell's status for a process ended by this signal (143 for SIGTERM)."""
        return 128 + self.signum


__all__ = ["AdapterMismatchError", "ArtifactError", "ConfigError", "ConfigFileError", "CoreMismatchError",
           "DataFormatError",
           "EntityTypeError", "EpisodeSamplingError", "ModelNotFoundError", "MultiBertError", "NerAdaptersError",
           "NerAdaptersWarning", "TagError", "TagRepairWarning", "TrainingInterrupted", "UnknownDatasetError"]
