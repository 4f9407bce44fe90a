"""How alike MiniLM's [CLS] vectors are for router groups within and across domains (mean cosine).

Why the formal/informal router stays at chance with the English core: Persian groups (Arman, ParsTwiNER) get
nearly the same [CLS] vector whatever their domain, English UNER genres do not (docs/results.md). The groups are
the router's own (``make_groups``: up to 8 test sentences of one domain in 512 tokens).

    python benchmarks/profiling/cls_similarity.py [--groups 12]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common  # noqa: E402,F401  (threads before torch)

import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from ner_adapters.data.registry import load_sentences  # noqa: E402
from ner_adapters.models import MINILM, resolve_model  # noqa: E402
from ner_adapters.multibert import make_groups  # noqa: E402

DOMAINS = {"arman": ("arman", "fold1"), "parstwiner": ("parstwiner", None),
           "uner:email": ("uner_en_ewt", "email"), "uner:reviews": ("uner_en_ewt", "reviews")}
PAIRS = [("arman", "arman"), ("parstwiner", "parstwiner"), ("arman", "parstwiner"),
         ("uner:email", "uner:email"), ("uner:reviews", "uner:reviews"), ("uner:email", "uner:reviews")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=12, help="groups per domain (the first ones of its test split)")
    args = parser.parse_args()
    path = resolve_model(MINILM)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    sentences = {name: load_sentences(dataset, config, split="test") for name, (dataset, config) in DOMAINS.items()}
    groups = make_groups(sentences, tokenizer)
    vectors = {}
    for name in DOMAINS:
        texts = [g.text for g in groups if g.domain == name][:args.groups]
        with torch.inference_mode():
            encoding = tokenizer(texts, truncation=True, max_length=512, padding=True, return_tensors="pt")
            vectors[name] = torch.nn.functional.normalize(model(**encoding).last_hidden_state[:, 0], dim=-1)
    print("| groups | mean [CLS] cosine |\n|---|---|")
    for a, b in PAIRS:
        print(f"| {a} vs {b} | {float((vectors[a] @ vectors[b].T).mean()):.3f} |")


if __name__ == "__main__":
    main()
