"""Concurrent use of the library-level prediction paths: 8 threads, each asking for a different adapter.

tests/test_pipeline.py already runs 8 threads through ``ner_adapters.pipeline`` over Multi-BERT adapters. Here
the objects underneath are shared the same way: one ``MultiBertModel`` (``predict`` per domain, long sentences
included, so the windowed path runs concurrently too), one ``DomainRouter`` (``tag``), and two
``CLLMFSExtractor`` objects with different LoRA adapters, each called from several threads at once with answers
long enough to be cut by ``max_new_tokens`` and continued (per-call state that must not leak between threads).
Every answer must equal the one the same request gets alone.
"""

from __future__ import annotations

import random
import threading

import pytest
import torch

from multibert_tiny import TYPES, build_tiny_core, one_torch_thread, randomize
from scripted_answers import ScriptedAnswers

THREADS = 8


def run_threads(worker, timeout: float) -> None:
    """``worker(i)`` in THREADS threads started together; every one must finish within ``timeout``."""
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads)


@pytest.fixture(scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def mbert(tmp_path_factory, _one_thread):
    from ner_adapters.multibert import MultiBertModel

    core = build_tiny_core(tmp_path_factory.mktemp("core"))
    model = MultiBertModel.from_core(str(core), max_length=32)
    model.add_scheme("toy", TYPES)
    model.add_scheme("places", ["LOC"])
    for domain in ("news", "sports", "travel"):
        model.add_domain(domain, "toy")
    model.add_domain("holiday", "places")
    model.add_general("toy")
    model.add_router(["news", "sports", "travel"], max_length=64, threshold=0.4)
    randomize(model, seed=5)
    return model


def _extractor(tiny_llm_dir, seed: int, script: dict):
    """The tiny Llama with its own random LoRA, steered to answer ``script`` (per model instance)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig, EntityType

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llm_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    types = [EntityType("person", "Person", "a named person"), EntityType("location", "Location", "a named place")]
    return CLLMFSExtractor(model, tokenizer, types, decoding=DecodingConfig(max_new_tokens=7, batch_size=4),
                           make_logits_processors=lambda: [ScriptedAnswers(tokenizer, script)])


@pytest.fixture(scope="module")
def extractors(tiny_llm_dir, _one_thread):
    return {"A": _extractor(tiny_llm_dir, 1, {"Location": ["Paris"], "Person": ["Ali"]}),
            "B": _extractor(tiny_llm_dir, 2, {"Location": ["Rome"], "Person": ["Sara"]})}


SENTENCES = ["arsenal beat bayern in london .", " ".join(["john scored twice for arsenal in berlin ."] * 6)]  # windows
DOCUMENTS = ["mary visited paris today . john scored twice for arsenal .", "we flew from london to tehran ."]
TEXTS = [" ".join(["Ali met Sara in Paris and Rome ."] * 4), "Paris , Rome , Ali and Sara", "nothing here"]


def requests():
    out = [("predict", domain, text) for domain in ("news", "sports", "travel", "holiday") for text in SENTENCES]
    out += [("route", None, doc) for doc in DOCUMENTS]
    out += [("extract", name, text) for name in ("A", "B") for text in TEXTS]
    return out


def answer(mbert, extractors, request):
    from ner_adapters.multibert import DomainRouter

    kind, key, text = request
    if kind == "predict":
        return [e.as_dict() for e in mbert.predict([text], key)[0]]
    if kind == "route":
        return DomainRouter(mbert).tag(text).as_dict()
    return extractors[key](text)


def same(a, b) -> bool:
    return repr(_rounded(a)) == repr(_rounded(b))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_eight_threads_each_get_their_own_adapters_answer(mbert, extractors):
    calls = requests()
    expected = {call: answer(mbert, extractors, call) for call in calls}
    # the adapters really answer differently, or mixing them up could go unnoticed
    assert len({repr(_rounded(expected[("predict", d, SENTENCES[0])])) for d in ("news", "sports", "travel")}) == 3
    assert not same(expected[("extract", "A", TEXTS[0])], expected[("extract", "B", TEXTS[0])])
    # 4 "Paris" + 4 "Ali": answers of one entity each (max_new_tokens=7), continued after every cut
    assert len(expected[("extract", "A", TEXTS[0])]) == 8
    assert extractors["A"].stats.get("cut", 0) == 0
    failures, barrier = [], threading.Barrier(THREADS)

    # many cut-and-continued answers, and many routed documents (tokenized for the classifier while other threads
    # tokenize for tagging: a fast tokenizer used by two threads at once fails with "Already borrowed")
    heavy = [("extract", name, TEXTS[0]) for name in ("A", "B")] * 2 + [("route", None, doc) for doc in DOCUMENTS] * 4

    def worker(seed: int):
        order = random.Random(seed).sample(calls + heavy, len(calls) + len(heavy))
        barrier.wait()
        for call in order:
            try:
                got = answer(mbert, extractors, call)
            except Exception as err:  # noqa: BLE001 - a thread's exception would otherwise only be printed
                failures.append((call[:2], repr(err)))
                continue
            if not same(got, expected[call]):
                failures.append((call[:2], "answered by another adapter or call"))

    run_threads(worker, timeout=600)
    assert not failures, failures[:5]


# --- the Space: 8 gradio_client clients at once ----------------------------------------------------------------


@pytest.fixture(scope="module")
def space_url(published, _one_thread):
    """``spaces/app.py`` configured from its environment variables (the published repos, a rate limit high
    enough for 8 clients sharing one address), launched on a free local port."""
    from ner_adapters.hub.push import PushResult, space_models
    from test_space import _free_port, load_app

    app = load_app()
    models = space_models(PushResult(**entry) for entry in published["report"])
    environ = {"NER_SPACE_MULTIBERT": ",".join(models["multibert"]), "NER_SPACE_CLLMFS": models["cllmfs"],
               "NER_SPACE_RATE_LIMIT": "10000"}
    config = app.SpaceConfig.from_env(environ)
    assert config.rate_limit == 10000
    loaded = app.Models(config)
    assert loaded.problems == [] and len(loaded.modes()) == 3
    demo = app.build_demo(loaded, config)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                show_error=False)
    try:
        yield app, loaded, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


SPACE_TEXTS = ["mary visited paris today . john scored twice for arsenal in london .",
               "i emailed mary smith about the google offer in berlin ."]


def test_eight_space_clients_each_get_their_own_adapters_answer(space_url):
    from gradio_client import Client

    app, models, url = space_url
    calls = [(text, app.MODE_AUTO, None, "") for text in SPACE_TEXTS]
    calls += [(text, app.MODE_DOMAIN, domain, "") for domain in models.domains() for text in SPACE_TEXTS]
    calls += [("Ali met Sara in Rome and Paris .", app.MODE_CLLMFS, None, types)
              for types in ("person, location", "location", "person")]
    alone = Client(url, verbose=False)
    expected = {call: repr(alone.predict(*call, api_name="/extract")) for call in calls}
    assert not any("⚠️" in answer for answer in expected.values()), expected
    # the domain adapters answer differently (or a mix-up could go unnoticed) and say which adapter answered
    domain_answers = {expected[c] for c in calls if c[1] == app.MODE_DOMAIN and c[0] == SPACE_TEXTS[0]}
    assert len(domain_answers) == len(models.domains()) >= 2

    failures, barrier = [], threading.Barrier(THREADS)

    def worker(seed: int):
        client = Client(url, verbose=False)
        order = random.Random(seed).sample(calls, len(calls))
        barrier.wait()
        for call in order:
            try:
                got = repr(client.predict(*call, api_name="/extract"))
            except Exception as err:  # noqa: BLE001
                failures.append((call[1:], repr(err)))
                continue
            if got != expected[call]:
                failures.append((call[1:], got[:200]))

    run_threads(worker, timeout=300)
    assert not failures, failures[:5]
