"""Which core separates these domains? A probe on frozen, mean-pooled group embeddings, before training a router.

The router's groups (``make_groups``: the recipe's group size and length) of each domain's train and test splits are
embedded by each core, frozen (mean of the last hidden states, the pooling the router reads), and classified by
two probes that train in seconds: the nearest domain centroid (cosine), and a logistic regression (L2, LBFGS).
The test-group accuracy says how much domain signal a core carries before any adapter is trained; the trained
router usually lands at or above the better probe (docs/results.md, release 14).

    python benchmarks/router_probe.py --config recipes/multibert/gum_genres.yaml
    python benchmarks/router_probe.py --config recipes/multibert/default.yaml --cores sentence-transformers/all-MiniLM-L6-v2
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import time

from _common import base_parser, machine_info, setup, table, write_results

DEFAULT_CORES = ["sentence-transformers/all-MiniLM-L6-v2", "intfloat/multilingual-e5-small"]


def load_core(core: str):
    """The core's fast tokenizer and frozen encoder (packaged copies offline)."""
    from transformers import AutoModel, AutoTokenizer

    from ner_adapters.models import resolve_model

    path = resolve_model(core)
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(tokenizer, model, texts: list[str], max_length: int, batch_size: int = 8):
    """L2-normalised mean-pooled last hidden states of the frozen ``model`` for ``texts``."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append((hidden * mask).sum(1) / mask.sum(1))
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1)


def probes(train_x, train_y, test_x, n_classes: int) -> dict:
    """Test predictions of the nearest centroid and of an L2 logistic regression."""
    import torch

    centroids = torch.stack([train_x[train_y == k].mean(0) for k in range(n_classes)])
    centroid = (test_x @ torch.nn.functional.normalize(centroids, dim=-1).T).argmax(1)
    torch.manual_seed(0)
    weight = torch.zeros(train_x.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(10 * train_x @ weight + bias, train_y) + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        logistic = (10 * test_x @ weight + bias).argmax(1)
    return {"nearest_centroid": centroid, "logistic_regression": logistic}


def main(argv: list[str] | None = None) -> dict:
    import torch

    from ner_adapters.multibert.config import parse_config
    from ner_adapters.multibert.domains import load_domains
    from ner_adapters.multibert.router import make_groups

    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", required=True, help="the Multi-BERT recipe config(s)")
    parser.add_argument("--cores", nargs="+", default=DEFAULT_CORES, help="Hub ids or folders of the cores to probe")
    args = parser.parse_args(argv)
    device = setup(args)
    machine = machine_info(device)
    config = parse_config([arg for name in args.config for arg in ("--config", name)])
    _, domains = load_domains(config.data)
    names = [d.name for d in domains]
    router = config.router
    rows, details = [], {}
    for core in args.cores:
        started = time.time()
        tokenizer, model = load_core(core)  # the core's tokenizer sizes the groups, as in the router

        def groups(split: str):
            return make_groups({d.name: getattr(d, split) for d in domains}, tokenizer, group_size=router.group_size,
                               max_length=router.router_max_length)

        train, test = groups("train"), groups("test")
        train_x = embed(tokenizer, model, [g.text for g in train], router.router_max_length)
        test_x = embed(tokenizer, model, [g.text for g in test], router.router_max_length)
        train_y = torch.tensor([names.index(g.domain) for g in train])
        test_y = torch.tensor([names.index(g.domain) for g in test])
        for probe, predicted in probes(train_x, train_y, test_x, len(names)).items():
            right = predicted == test_y
            per_domain = {n: round(float(right[test_y == k].float().mean()), 3) for k, n in enumerate(names)
                          if (test_y == k).any()}
            rows.append({"core": core, "probe": probe, "accuracy": round(float(right.float().mean()), 4),
                         "train_groups": len(train), "test_groups": len(test),
                         "per_domain": ", ".join(f"{n} {v:.0%}" for n, v in per_domain.items())})
            details[f"{core} {probe}"] = per_domain
        rows[-1]["seconds"] = rows[-2]["seconds"] = round(time.time() - started, 1)
        scores = ", ".join("{} {:.3f}".format(r["probe"], r["accuracy"]) for r in rows[-2:])
        print(f"  {core}: {scores}", flush=True)
    columns = ["core", "probe", "accuracy", "train_groups", "test_groups", "seconds", "per_domain"]
    print(f"\nDomain probes on frozen mean-pooled groups ({router.group_size} sentences, {router.router_max_length} "
          f"tokens), {len(names)} domains: {', '.join(names)}\n")
    print(table(rows, columns))
    write_results("router_probe", args, device, {
        "settings": {"config": args.config, "domains": names, "group_size": router.group_size,
                     "max_length": router.router_max_length},
        "columns": columns, "rows": rows, "per_domain": details}, machine)
    return {"rows": rows}


if __name__ == "__main__":
    main()
