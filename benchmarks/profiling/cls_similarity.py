"""Mean cosine similarity of MiniLM's [CLS] vectors for groups of 4 test sentences, within and across domains.

Why the formal/informal router stays at chance with the English core: Persian groups (Arman, ParsTwiNER) get
nearly the same [CLS] vector whatever their domain, English UNER genres do not (docs/results.md).
    python benchmarks/profiling/cls_similarity.py
"""
import torch
from transformers import AutoTokenizer, AutoModel
from ner_adapters.models import resolve_model
from ner_adapters.data.registry import load_sentences
torch.set_num_threads(1)
path = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
tok = AutoTokenizer.from_pretrained(path); m = AutoModel.from_pretrained(path).eval()
def groups(sents, n=12, k=4):
    return [" ".join(" ".join(s.tokens) for s in sents[i*k:(i+1)*k]) for i in range(n)]
def cls(texts):
    with torch.no_grad():
        e = tok(texts, truncation=True, max_length=512, padding=True, return_tensors="pt")
        return torch.nn.functional.normalize(m(**e).last_hidden_state[:, 0], dim=-1)
def mean_cos(a, b):
    return float((a @ b.T).mean())
sets = {"arman": load_sentences("arman", "fold1", split="test"), "parstwiner": load_sentences("parstwiner", split="test"),
        "uner:email": load_sentences("uner_en_ewt", "email", split="test"), "uner:reviews": load_sentences("uner_en_ewt", "reviews", split="test")}
c = {k: cls(groups(v)) for k, v in sets.items()}
for a, b in [("arman","arman"),("parstwiner","parstwiner"),("arman","parstwiner"),("uner:email","uner:email"),("uner:reviews","uner:reviews"),("uner:email","uner:reviews")]:
    print(f"{a:>12} vs {b:<12} mean CLS cosine {mean_cos(c[a], c[b]):.4f}")
