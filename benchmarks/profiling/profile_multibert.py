"""Target for py-spy: the routed Multi-BERT pipeline (``DomainRouter.tag_many``) on the 512 mixed sentences, twice.

    py-spy record --rate 100 --format raw -o multibert.txt -- python benchmarks/profiling/profile_multibert.py
    python benchmarks/profiling/pyspy_summary.py multibert.txt
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common  # noqa: E402,F401  (threads before torch)

import torch  # noqa: E402

from bench_multibert import DEFAULT_MODEL, mixed_documents  # noqa: E402
from ner_adapters.multibert import DomainRouter, MultiBertModel  # noqa: E402

torch.set_num_threads(1)
mbert = MultiBertModel.load(DEFAULT_MODEL)
router = DomainRouter(mbert)
documents = [[s.tokens for s in doc] for _, doc in mixed_documents(512)]
router.tag_many(documents[:3])
for _ in range(2):
    router.tag_many(documents)
