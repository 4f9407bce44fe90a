"""Answer lengths (generated tokens before the stop) of batched per-type extraction, 2 types, 8 and 16 sentences:
why the 16-sentence point of the scaling plot costs more than twice the 8-sentence one.

    python benchmarks/profiling/answer_lengths.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common  # noqa: E402,F401  (threads before torch)

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from _common import SMOLLM2, resolve_llm  # noqa: E402
from bench_cllmfs_extract import DEFAULT_ADAPTER, DEFAULT_EPISODES  # noqa: E402
from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig  # noqa: E402
from ner_adapters.cllmfs.experiment import episode_types  # noqa: E402
from ner_adapters.episodes import load_episodes  # noqa: E402

torch.set_num_threads(1)
episode = load_episodes(DEFAULT_EPISODES)[0]
_, types = episode_types(episode)
path = resolve_llm(SMOLLM2)
tokenizer = AutoTokenizer.from_pretrained(path)
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), str(DEFAULT_ADAPTER))
lengths: list[int] = []
read_answer = CLLMFSExtractor._read_answer


def recording(self, job, ids, logprobs):
    stops = set(self.stop_ids) | {self.tokenizer.pad_token_id}
    lengths.append(next((i for i, t in enumerate(ids) if t in stops), len(ids)))
    return read_answer(self, job, ids, logprobs)


CLLMFSExtractor._read_answer = recording
for n in (8, 16):
    lengths.clear()
    extractor = CLLMFSExtractor(model.eval(), tokenizer, types[:2], decoding=DecodingConfig(batch_size=32, max_new_tokens=48))
    extractor.predict_sentences(episode.query[:n])
    print(f"{n} sentences, {extractor.stats['prompts']} prompts: answer lengths {sorted(lengths)}")
