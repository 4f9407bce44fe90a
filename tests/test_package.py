"""Package-level promises: light imports, no code execution from artifacts."""

import subprocess
import sys


def test_light_import_does_not_pull_hf_libraries():
    # pytest and users import ner_adapters before setting HF_ENDPOINT/HF_HOME; that must still work.
    code = "import sys, ner_adapters, ner_adapters.spans; print(sorted(m for m in ('datasets', 'huggingface_hub', 'torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_lazy_exports():
    import ner_adapters

    assert ner_adapters.Span.__name__ == "Span"
    assert callable(ner_adapters.load_ner_dataset)
