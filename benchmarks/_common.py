"""Shared helpers of the benchmark scripts: threads, machine facts, timing, peak memory, tables, JSON.

Every script imports this module *before* torch, so ``OMP_NUM_THREADS`` (default 1) is set in time. Figures
are medians over repeats; comparisons are ratios of variants measured side by side in the same run, with the
variants' order rotated from one repeat to the next so that drift (another process starting, thermal state)
falls on every variant alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def _threads_from_argv(default: int = 1) -> int:
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return default


# Before torch is imported anywhere: the thread pools read these once.
_THREADS = _threads_from_argv()
os.environ["OMP_NUM_THREADS"] = str(_THREADS)
os.environ["MKL_NUM_THREADS"] = str(_THREADS)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
if str(REPO_ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT / "src"))


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: cuda when a GPU is present, else cpu")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per variant; figures are medians")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads (set before torch loads)")
    parser.add_argument("--quick", action="store_true", help="fast smoke mode: tiny sizes, one repeat")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/<name>.json)")
    return parser


def setup(args: argparse.Namespace) -> str:
    """Apply the thread count, return the device ("cpu" or "cuda")."""
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU is visible to torch")
    return args.device


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "platform": platform.platform(),
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rotations(variants: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(repeat, variant) in an order rotated by one each repeat: ABC, BCA, CAB, ..."""
    n = len(variants)
    for r in range(repeats):
        for i in range(n):
            yield r, variants[(i + r) % n]


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def max_rss_bytes() -> int:
    """Peak RSS of this process since it started: ``VmHWM`` on Linux, else ``ru_maxrss``.

    Not ``ru_maxrss`` on Linux: it survives ``fork`` + ``exec``, so a worker started by a parent holding a model
    reports the parent's peak (seen here: 5.2 GiB in every worker). ``VmHWM`` belongs to the new address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Peak RSS over a window (a sampling thread, every ``interval`` s) and, on a GPU, peak allocated memory.

    ``peak_rss`` is the highest RSS seen; ``delta_rss`` that minus the RSS at entry. Sampling can miss a
    spike shorter than the interval; ``ru_maxrss`` of a fresh process (``max_rss_bytes``) cannot.
    """

    def __init__(self, device: str = "cpu", interval: float = 0.005):
        self.device, self.interval = device, interval
        self.start_rss = self.peak_rss = 0
        self.peak_gpu: int | None = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start_rss = self.peak_rss = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.peak_gpu = torch.cuda.max_memory_allocated()
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, rss_bytes())

    @property
    def delta_rss(self) -> int:
        return self.peak_rss - self.start_rss


@contextmanager
def timer(device: str) -> Iterator[dict]:
    """``with timer(device) as t: ...`` then ``t["seconds"]`` (wall) and ``t["cpu_seconds"]`` (this process's CPU
    time, user + system, all threads). GPU work is synchronised at both ends.

    On a shared machine the wall time of a single-threaded run stretches whenever another process takes the
    core; its CPU time does not, so ratios of CPU times are the steadier comparison there (on a GPU, compare
    wall times).
    """
    result: dict = {}
    sync(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield result
    finally:
        sync(device)
        result["seconds"] = time.perf_counter() - started
        result["cpu_seconds"] = time.process_time() - cpu_started


def gib(n: float | None) -> float | None:
    return None if n is None else round(n / 2**30, 3)


def mib(n: float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.3f}"
        return f"{value:.2g}"
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (dicts) over ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def write_results(name: str, args: argparse.Namespace, device: str, payload: dict, machine: dict | None = None) -> Path:
    machine = dict(machine or machine_info(device))
    machine["loadavg_end"] = list(os.getloadavg())
    data = {
        "benchmark": name,
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:]),
        "quick": bool(args.quick),
        "repeats": args.repeats,
        "machine": machine,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **payload,
    }
    path = args.out or RESULTS_DIR / f"{name}{'_quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {os.path.relpath(path, Path.cwd()) if path.is_absolute() else path}")
    return path


def tiny_llm(folder: Path) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer (the --quick model), saved once."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ner_adapters.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=5,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


TINY_DIR = REPO_ROOT / ".cache" / "benchmarks"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def resolve_llm(name: str) -> str:
    """``tiny`` (a random 5-layer, 32-wide Llama with SmolLM2's tokenizer) or any model name or folder."""
    if name == "tiny":
        return str(tiny_llm(TINY_DIR / "tiny-llm"))
    from ner_adapters.models import resolve_model

    return str(resolve_model(name))
