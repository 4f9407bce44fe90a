"""Target for py-spy: one batched CLLMFS extraction (SmolLM2-135M + the dev adapter), after a one-sentence warm-up.

    py-spy record --rate 50 --format raw -o extract.txt -- python benchmarks/profiling/profile_extract.py per_type on 8
    python benchmarks/profiling/pyspy_summary.py extract.txt

Arguments: prompt mode (per_type | all_types), constrained (on | off), sentences, [batch size], [nocache].
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common  # noqa: E402,F401  (threads before torch)

import time  # noqa: E402

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from _common import SMOLLM2, resolve_llm  # noqa: E402
from bench_cllmfs_extract import DEFAULT_ADAPTER, DEFAULT_EPISODES  # noqa: E402
from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig  # noqa: E402
from ner_adapters.cllmfs.experiment import episode_types  # noqa: E402
from ner_adapters.episodes import load_episodes  # noqa: E402

torch.set_num_threads(1)
mode, constrained, n = sys.argv[1], sys.argv[2] == "on", int(sys.argv[3])
batch_size = int(sys.argv[4]) if len(sys.argv) > 4 else 32
cache = not (len(sys.argv) > 5 and sys.argv[5] == "nocache")
episode = load_episodes(DEFAULT_EPISODES)[0]
_, types = episode_types(episode)
path = resolve_llm(SMOLLM2)
tokenizer = AutoTokenizer.from_pretrained(path)
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), str(DEFAULT_ADAPTER))
decoding = DecodingConfig(constrained=constrained, batch_size=batch_size, prefix_cache=cache,
                          max_new_tokens=48 if mode == "per_type" else 96)
extractor = CLLMFSExtractor(model.eval(), tokenizer, types, prompt_mode=mode, decoding=decoding)
extractor.predict_sentences(episode.query[:1])
started = time.perf_counter()
extractor.predict_sentences(episode.query[:n])
print("seconds", time.perf_counter() - started, extractor.stats, flush=True)
