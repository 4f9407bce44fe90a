"""Concurrency: requests/s and latency percentiles of ``ner_adapters.pipeline`` under 8 client threads.

One pipeline over a saved Multi-BERT set (four domain adapters, the general adapter and the domain classifier)
serves requests that each name a domain (or ``auto``: routed by the classifier). Clients are threads sharing the
pipeline, each sending its own stream of (sentence, domain) requests, the domains interleaved so consecutive
requests need different adapters. Every answer is checked against the answer the same request gets alone
(``mixed``: answers that came from another adapter; must be 0). Reported per client count: requests/s over the
whole run, and the median (p50) and 95th-percentile (p95) latency of one request, in milliseconds.

The adapters are untrained (random weights), which changes nothing in the cost. The core is MiniLM
(sentence-transformers/all-MiniLM-L6-v2, packaged, 22.7M parameters) or, with ``--quick``, a random 2-layer core.
Sentences: the UNER English-EWT test split (bundled), cycled.

    python benchmarks/bench_concurrency.py                    # MiniLM, 1 and 8 clients
    python benchmarks/bench_concurrency.py --clients 1 2 4 8 --requests 64
    python benchmarks/bench_concurrency.py --quick            # tiny core, a few requests
    python benchmarks/bench_concurrency.py --target space --clients 1 2 4 8 --requests 12 --repeats 1

``--target space`` measures the Gradio Space (``spaces/app.py``) instead: the same saved set served by the app
(its own queue: at most 2 requests run at once, ``concurrency_limit=2``), launched on a local port, each client a
``gradio_client.Client`` in its own thread calling ``/extract`` (``auto`` -> the automatic mode, a domain -> the
chosen-domain mode). Every answer is compared with the answer the same request got from one client alone. The
app's per-client rate limit is lifted (``rate_limit``) for the run: every client is 127.0.0.1. Results go to
``benchmarks/results/concurrency_space.json``.
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import random
import tempfile
import threading
import time
from pathlib import Path

from _common import TINY_DIR, base_parser, machine_info, median, setup, table, write_results

DOMAINS = ("answers", "email", "newsgroup", "reviews")
SCHEME = "uner_en_ewt"
TYPES = ("PER", "ORG", "LOC")


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def build_saved_model(core: str, folder: Path) -> Path:
    import torch

    from ner_adapters.multibert import MultiBertModel

    torch.manual_seed(0)
    mbert = MultiBertModel.from_core(core)
    mbert.add_scheme(SCHEME, TYPES)
    for domain in DOMAINS:
        mbert.add_domain(domain, SCHEME)
    mbert.add_general(SCHEME)
    mbert.add_router(list(DOMAINS), threshold=0.0)
    with torch.no_grad():  # untrained LoRA is a no-op: give each adapter and head its own weights
        for name, parameter in mbert.model.named_parameters():
            if "loras" in name or name.startswith("heads."):
                parameter.normal_(0, 0.2)
    return mbert.save(folder / "model")


def sentences(n: int) -> list[str]:
    from ner_adapters.data.registry import load_sentences

    texts = [s.text for s in load_sentences("uner_en_ewt", split="test") if 3 <= len(s.tokens) <= 40]
    return [texts[i % len(texts)] for i in range(n)]


def run_clients(pipe, requests_per_client: list[list[tuple[str, str]]], expected: dict, key=None) -> dict:
    """``pipe``: a callable ``(text, domain=...)`` shared by the clients, or a list of one per client."""
    key = key or _key
    latencies: list[float] = []
    mixed, errors = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(len(requests_per_client) + 1)

    def client(pipe, requests):
        barrier.wait()
        for text, domain in requests:
            started = time.perf_counter()
            try:
                answer = pipe(text, domain=domain)
            except Exception as err:  # noqa: BLE001
                with lock:
                    errors.append(repr(err))
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if key(answer) != expected[(text, domain)]:
                    mixed.append((text[:30], domain))

    pipes = pipe if isinstance(pipe, list) else [pipe] * len(requests_per_client)
    threads = [threading.Thread(target=client, args=(p, r)) for p, r in zip(pipes, requests_per_client)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    total = sum(len(r) for r in requests_per_client)
    return {"clients": len(requests_per_client), "requests": total, "wall_s": wall,
            "requests_per_s": len(latencies) / wall, "p50_ms": 1000 * percentile(latencies, 0.5),
            "p95_ms": 1000 * percentile(latencies, 0.95), "max_ms": 1000 * max(latencies, default=float("nan")),
            "mixed": len(mixed), "errors": len(errors), "error_examples": errors[:3]}


def _key(answer) -> str:
    return repr([(e["entity_group"], e["start"], e["end"], round(e["score"], 4)) for e in answer])


def _load_app():
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "spaces" / "app.py"
    spec = importlib.util.spec_from_file_location("ner_adapters_space_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class SpaceClient:
    """One ``gradio_client.Client`` as a pipeline-like callable: ``(text, domain=...)`` -> the Space's answer."""

    def __init__(self, app, url: str):
        from gradio_client import Client

        self.app, self.client = app, Client(url, verbose=False)

    def __call__(self, text: str, domain: str):
        mode = self.app.MODE_AUTO if domain == "auto" else self.app.MODE_DOMAIN
        answer = self.client.predict(text, mode, None if domain == "auto" else domain, "", api_name="/extract")
        if "⚠️" in str(answer[2]):
            raise RuntimeError(answer[2])
        return answer


def start_space(core: str, saved: Path):
    """The Space app serving the saved set on a free local port: ``(app module, demo, url)``."""
    import socket

    app = _load_app()
    config = app.SpaceConfig(multibert=[str(saved)], core=core, rate_limit=10**9)
    models = app.Models(config)
    if models.problems:
        raise RuntimeError(models.problems)
    demo = app.build_demo(models, config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                show_error=False)
    return app, demo, f"http://127.0.0.1:{port}/"


def main():
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="client threads per run")
    parser.add_argument("--requests", type=int, default=48, help="requests per client")
    parser.add_argument("--target", choices=["pipeline", "space"], default="pipeline",
                        help="what the clients call: the pipeline in-process, or the Gradio Space via gradio_client")
    parser.add_argument("--core", default=None, help="core model (default MiniLM; --quick: a tiny random core)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.requests = 1, 8
    device = setup(args)
    machine = machine_info(device)

    from ner_adapters import pipeline
    from ner_adapters.models import MINILM

    if args.core:
        core = args.core
    elif args.quick:
        from bench_multibert import tiny_core

        core = str(tiny_core(TINY_DIR / "tiny-bert"))
    else:
        core = MINILM
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        saved = build_saved_model(core, Path(tmp))
        demo = None
        if args.target == "space":
            app, demo, url = start_space(core, saved)
            key = repr
        else:
            pipe = pipeline("token-classification", model=core, adapter=str(saved), device=device)
            key = _key
        domains = [*DOMAINS, "auto"]
        max_clients = max(args.clients)
        texts = sentences(args.requests * max_clients)
        rng = random.Random(0)
        streams = [[(texts[c * args.requests + i], domains[(c + i) % len(domains)]) for i in range(args.requests)]
                   for c in range(max_clients)]
        for stream in streams:
            rng.shuffle(stream)
        if args.target == "space":
            pipe = SpaceClient(app, url)  # alone, for the expected answers
            clients_pipes = [SpaceClient(app, url) for _ in range(max_clients)]
        expected = {request: key(pipe(request[0], domain=request[1])) for stream in streams for request in stream}
        pipe("warm up", domain="auto")
        rows = []
        for clients in args.clients:
            target = clients_pipes[:clients] if args.target == "space" else pipe
            runs = [run_clients(target, streams[:clients], expected, key) for _ in range(args.repeats)]
            best = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]  # the median run
            best["repeats_requests_per_s"] = [round(r["requests_per_s"], 2) for r in runs]
            best["mixed"] = sum(r["mixed"] for r in runs)
            best["errors"] = sum(r["errors"] for r in runs)
            rows.append(best)
        if demo is not None:
            demo.close()
    print(f"target {args.target}; core {core}; {len(DOMAINS)} domain adapters + general + router; "
          f"{args.requests} requests per client; "
          f"domains interleaved ({', '.join(domains)}); torch threads {args.threads}; device {device}")
    print(table(rows, ["clients", "requests", "requests_per_s", "p50_ms", "p95_ms", "max_ms", "mixed", "errors"]))
    if any(r["mixed"] or r["errors"] for r in rows):
        print("ANSWERS MIXED UP OR FAILED:", [r["error_examples"] for r in rows])
    name = "concurrency" if args.target == "pipeline" else "concurrency_space"
    path = write_results(name, args, device, {"target": args.target, "core": core, "domains": list(DOMAINS),
                                                      "requests_per_client": args.requests, "runs": rows,
                                                      "median_requests_per_s": {r["clients"]: r["requests_per_s"]
                                                                                for r in rows}}, machine)
    print(f"results: {path}")
    return 1 if any(r["mixed"] or r["errors"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
