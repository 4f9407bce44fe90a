"""Loading an artifact never runs code from it.

1. An AST scan of ``src/``, ``recipes/`` and ``spaces/`` (comments and strings do not count; aliases such as
   ``import torch as t`` or ``from pickle import loads`` do) for ``trust_remote_code`` set to anything but a
   literal ``False``, ``pickle``/``dill``/``cloudpickle`` ``load(s)``, ``torch.load`` without ``weights_only=True``
   and ``numpy.load(allow_pickle=True)``. The scanner is itself tested on a planted file.
2. The one place the stack still writes pickle, AdapterHub prefix tuning (``pytorch_adapter.bin``: safetensors
   refuses its shared tensors), is read back with ``torch.load(weights_only=True)``: a saved Multi-BERT set whose
   ``pytorch_adapter.bin`` carries a code-running pickle is refused and the code never runs. The same holds for a
   CLLMFS adapter shipped as ``adapter_model.bin`` and for a plain ``torch.load`` in this environment.
"""

from __future__ import annotations

import ast
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("src", "recipes", "spaces")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _literal(node: ast.AST, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str):
        self.path = path
        self.findings: list[Finding] = []
        self.torch_names = {"torch"}  # names bound to the torch module
        self.torch_load_names: set[str] = set()  # names bound to torch.load
        self.pickle_modules: set[str] = set()  # names bound to pickle-like modules
        self.pickle_loads: set[str] = set()  # names bound to their load/loads
        self.numpy_names = {"numpy", "np"}

    def add(self, node: ast.AST, rule: str) -> None:
        self.findings.append(Finding(self.path, node.lineno, rule))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            if alias.name == "torch":
                self.torch_names.add(bound)
            elif alias.name in PICKLE_MODULES:
                self.pickle_modules.add(bound)
            elif alias.name == "numpy":
                self.numpy_names.add(bound)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name
            if node.module == "torch" and alias.name == "load":
                self.torch_load_names.add(bound)
            elif node.module in PICKLE_MODULES and alias.name in ("load", "loads", "Unpickler"):
                self.pickle_loads.add(bound)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if "trust_remote_code" in keywords and not _literal(keywords["trust_remote_code"], False):
            self.add(node, "trust_remote_code is not False")
        is_torch_load = (isinstance(function, ast.Attribute) and function.attr == "load"
                         and isinstance(function.value, ast.Name) and function.value.id in self.torch_names) or \
                        (isinstance(function, ast.Name) and function.id in self.torch_load_names)
        if is_torch_load and not _literal(keywords.get("weights_only"), True):
            self.add(node, "torch.load without weights_only=True")
        is_pickle_load = (isinstance(function, ast.Attribute) and function.attr in ("load", "loads", "Unpickler")
                          and isinstance(function.value, ast.Name) and function.value.id in self.pickle_modules) or \
                         (isinstance(function, ast.Name) and function.id in self.pickle_loads)
        if is_pickle_load:
            self.add(node, "pickle load")
        is_numpy_load = isinstance(function, ast.Attribute) and function.attr == "load" and \
            isinstance(function.value, ast.Name) and function.value.id in self.numpy_names
        if is_numpy_load and "allow_pickle" in keywords and not _literal(keywords["allow_pickle"], False):
            self.add(node, "numpy.load with allow_pickle")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:  # from_pretrained(**{"trust_remote_code": True})
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and not _literal(value, False):
                self.add(node, "trust_remote_code is not False")
        self.generic_visit(node)


def scan_source(text: str, path: str = "<string>") -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(text, filename=path))
    return scanner.findings


def scan_tree(root: Path, folders=SCANNED) -> tuple[list[Finding], int]:
    findings, files = [], 0
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else []:
            if ".venv" in path.parts or "__pycache__" in path.parts:
                continue
            files += 1
            findings += scan_source(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return findings, files


# --- the scanner ----------------------------------------------------------------------------------------------

PLANTED = '''
import pickle as pk
import torch as T
import numpy
from pickle import loads as unpickle
from torch import load as tload
from transformers import AutoModel

# comments do not count: torch.load(x) pickle.load(f) trust_remote_code=True
"""nor do strings: torch.load(path), pickle.loads(data), trust_remote_code=True"""

def bad(path, data, flag):
    AutoModel.from_pretrained(path, trust_remote_code=True)        # 13
    AutoModel.from_pretrained(path, trust_remote_code=flag)        # 14: not a literal False
    AutoModel.from_pretrained(path, **{"trust_remote_code": True}) # 15
    pk.load(open(path, "rb"))                                      # 16
    unpickle(data)                                                 # 17
    T.load(path)                                                   # 18
    T.load(path, weights_only=False)                               # 19
    tload(path, map_location="cpu")                                # 20
    numpy.load(path, allow_pickle=True)                            # 21

def fine(path):
    AutoModel.from_pretrained(path, trust_remote_code=False)
    T.load(path, weights_only=True)
    tload(path, weights_only=True, map_location="cpu")
    numpy.load(path)
    other.load(path)
'''


def test_scanner_finds_every_planted_pattern_and_ignores_comments(tmp_path):
    planted = tmp_path / "src" / "evil.py"
    planted.parent.mkdir()
    planted.write_text(PLANTED, encoding="utf-8")
    findings, files = scan_tree(tmp_path)
    assert files == 1
    assert [(f.line, f.rule) for f in findings] == [
        (13, "trust_remote_code is not False"), (14, "trust_remote_code is not False"),
        (15, "trust_remote_code is not False"), (16, "pickle load"), (17, "pickle load"),
        (18, "torch.load without weights_only=True"), (19, "torch.load without weights_only=True"),
        (20, "torch.load without weights_only=True"), (21, "numpy.load with allow_pickle"),
    ]
    assert str(findings[0]) == "src/evil.py:13: trust_remote_code is not False"


def test_package_recipes_and_space_load_nothing_unsafe():
    findings, files = scan_tree(REPO)
    assert files >= 40  # the scan really read the package
    assert findings == [], "\n".join(map(str, findings))


# --- pickled artifacts are read with weights_only=True ------------------------------------------------------------

MARKER_NAME = "code-ran"


class _RunsCode:
    """Unpickling this calls ``pathlib.Path(marker).touch()``: what a malicious artifact would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def malicious_weights(path: Path, marker: Path) -> None:
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode(marker)}, path)


def test_the_payload_really_runs_without_weights_only(tmp_path):
    """The planted file is a working exploit (so the tests below mean something)."""
    marker = tmp_path / MARKER_NAME
    malicious_weights(tmp_path / "w.bin", marker)
    torch.load(tmp_path / "w.bin", weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "w.bin")  # this torch defaults to weights_only=True
    assert not marker.exists()


@pytest.fixture(scope="module")
def prefix_set(tmp_path_factory):
    """A saved Multi-BERT set with a prefix-tuning domain (the pickle writer)."""
    from multibert_tiny import TYPES, build_tiny_core, one_torch_thread
    from ner_adapters.multibert import AdapterSpec, MultiBertModel

    with one_torch_thread():
        core = build_tiny_core(tmp_path_factory.mktemp("core"))
        mbert = MultiBertModel.from_core(str(core), max_length=32)
        mbert.add_scheme("toy", TYPES)
        mbert.add_domain("news", "toy", AdapterSpec("prefix", prefix_length=4, prefix_bottleneck_size=16))
        return mbert.save(tmp_path_factory.mktemp("saved") / "model")


def test_prefix_tuning_pickle_is_loaded_with_weights_only(prefix_set, tmp_path):
    import shutil

    from ner_adapters.multibert import MultiBertModel

    weights = prefix_set / "adapters" / "news" / "pytorch_adapter.bin"
    assert weights.is_file()  # prefix tuning really is stored as a pickle
    MultiBertModel.load(prefix_set)  # the genuine file loads
    copy = Path(shutil.copytree(prefix_set, tmp_path / "model"))
    marker = tmp_path / MARKER_NAME
    malicious_weights(copy / "adapters" / "news" / "pytorch_adapter.bin", marker)
    with pytest.raises((OSError, pickle.UnpicklingError)):
        MultiBertModel.load(copy)
    assert not marker.exists()


def test_adapters_library_loader_passes_weights_only():
    """The guarantee above comes from adapters' loader; pin it, so an upgrade that drops it fails here."""
    import adapters

    loader = Path(adapters.__file__).parent / "loading.py"
    tree = ast.parse(loader.read_text(encoding="utf-8"))
    loads = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "load" and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"]
    assert loads, "adapters no longer calls torch.load in loading.py: re-check how it reads pytorch_adapter.bin"
    assert all(_literal({k.arg: k.value for k in n.keywords}.get("weights_only"), True) for n in loads)


def test_cllmfs_pickled_adapter_is_refused(tiny_llm_dir, tmp_path):
    """A CLLMFS adapter folder with PEFT's legacy ``adapter_model.bin`` pickle instead of safetensors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ner_adapters.cllmfs import CLLMFSAdapterConfig, CLLMFSExtractor, save_adapter
    from ner_adapters.cllmfs.artifact import architecture_fingerprint

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llm_dir),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    config = CLLMFSAdapterConfig(base_model=str(tiny_llm_dir), base_fingerprint=architecture_fingerprint(model.config),
                                 entity_types=[{"label": "person", "name": "Person", "description": "a person"}])
    folder = save_adapter(model, AutoTokenizer.from_pretrained(tiny_llm_dir), tmp_path / "adapter", config)
    (folder / "adapter_model.safetensors").unlink()
    marker = tmp_path / MARKER_NAME
    malicious_weights(folder / "adapter_model.bin", marker)
    with pytest.raises(Exception) as err:
        CLLMFSExtractor.from_pretrained(tiny_llm_dir, adapter=folder)
    assert "weights_only" in str(err.value) or isinstance(err.value, pickle.UnpicklingError)
    assert not marker.exists()
