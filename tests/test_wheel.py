"""The package as a user installs it: a wheel built from this tree, installed into a fresh virtual environment
outside the checkout, pushes (dry run, with its model cards) and tags through the pipeline from there.

The fresh environment borrows the already-installed dependencies (a path line in a ``.pth`` file pointing at this
environment's site-packages; path lines are not processed as ``.pth`` directories, so this environment's
*editable* ``ner_adapters`` stays invisible) and gets ``ner_adapters`` only from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv (outside the checkout) with ner_adapters installed from a freshly built wheel."""
    root = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(root),
          str(REPO_ROOT)], cwd=root)
    (wheel,) = root.glob("ner_adapters-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
         cwd=root)
    return python


@pytest.mark.integration
def test_the_wheel_holds_the_package_data_and_installs_outside_the_checkout(wheel_python, tmp_path):
    probe = _run([str(wheel_python), "-c", """
import json, ner_adapters
from ner_adapters.hub.model_card import default_template_dir, TEMPLATES
from ner_adapters.data.registry import bundled_datasets
print(json.dumps({"file": ner_adapters.__file__, "templates": sorted(p.name for p in default_template_dir().iterdir()),
                  "bundled": bundled_datasets(),
                  "needed": sorted(TEMPLATES.values())}))
"""], cwd=tmp_path)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert str(REPO_ROOT) not in found["file"] and "site-packages" in found["file"]
    assert set(found["needed"]) <= set(found["templates"])
    assert {"wnut17", "uner_en_ewt", "parstwiner"} <= set(found["bundled"])


@pytest.mark.integration
def test_push_dry_run_and_pipeline_from_the_installed_wheel(wheel_python, multibert_run, tmp_path):
    """A Multi-BERT set exported with cards by the push recipe, and tagged by the pipeline, from the wheel."""
    from hub_tiny import DOMAINS

    export = tmp_path / "export"
    _run([str(wheel_python), str(REPO_ROOT / "recipes" / "push_to_hub.py"), "--multibert_dir",
          str(multibert_run.model_dir), "--dry_run", "true", "--export_dir", str(export), "--report_file",
          str(tmp_path / "report.json"), "--repo_prefix", "wheel"], cwd=tmp_path)
    cards = list(export.glob("*/README.md"))
    assert cards and all("ner-adapters" in card.read_text() for card in cards)
    script = f"""
import json
from ner_adapters import pipeline
ner = pipeline("token-classification", adapter={str(multibert_run.model_dir)!r})
print(json.dumps(ner(["mary visited paris today .", "john flew to london ."], domain={next(iter(DOMAINS))!r}),
                 default=float))
"""
    from ner_adapters import pipeline

    expected = pipeline("token-classification", adapter=str(multibert_run.model_dir))(
        ["mary visited paris today .", "john flew to london ."], domain=next(iter(DOMAINS)))
    got = json.loads(_run([str(wheel_python), "-c", script], cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert any(got), "the tiny model tags something, so the comparison means something"
    assert [[(e["entity_group"], e["start"], e["end"]) for e in row] for row in got] == \
        [[(e["entity_group"], e["start"], e["end"]) for e in row] for row in expected]
