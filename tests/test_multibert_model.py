"""MultiBertModel on a tiny BERT: schemes and domains, activation guards, counts, prefix ejection, save/load."""

import json

import pytest
import torch

from multibert_tiny import TYPES, build_tiny_core, make_domain, one_torch_thread, randomize
from ner_adapters.multibert import AdapterSpec, MultiBertError, MultiBertModel
from ner_adapters.multibert.model import MANIFEST

SENTENCES = [["mary", "visited", "paris", "today", "."], ["arsenal", "beat", "bayern", "in", "london", "."]]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_torch_thread():
        yield


def build(core, kind="lora", domains=("news", "sports")):
    mbert = MultiBertModel.from_core(str(core), max_length=32)
    mbert.add_scheme("toy", TYPES)
    mbert.add_scheme("places", ["LOC"])
    for name in domains:
        mbert.add_domain(name, "toy", AdapterSpec(kind, prefix_length=4, prefix_bottleneck_size=16))
    mbert.add_domain("travel", "places", AdapterSpec(kind, prefix_length=4, prefix_bottleneck_size=16))
    randomize(mbert)
    return mbert


def as_tuples(batch):
    return [[(e.entity_group, e.start, e.end, e.token_start, e.token_end, round(e.score, 5)) for e in s] for s in batch]


def test_schemes_domains_and_labels(core):
    mbert = build(core)
    assert mbert.schemes["toy"] == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
    assert mbert.domain_names() == ["news", "sports", "travel"]
    assert mbert.scheme_of("travel") == "places"
    with pytest.raises(MultiBertError, match="already exists"):
        mbert.add_domain("news", "toy")
    with pytest.raises(MultiBertError, match="unknown scheme 'nope'"):
        mbert.add_domain("x", "nope")
    with pytest.raises(MultiBertError, match="already exists"):
        mbert.add_scheme("toy", TYPES)
    with pytest.raises(MultiBertError, match="names the domain classifier"):
        mbert.add_domain("router", "toy")


def test_activation_switches_head_and_labels(core):
    mbert = build(core)
    assert mbert.activate("travel") == "places"
    assert mbert.model.config.id2label == {0: "O", 1: "B-LOC", 2: "I-LOC"}
    mbert.activate("news")  # set_active_adapters alone would leave the 3-label map of "places"
    assert len(mbert.model.config.id2label) == 7 and mbert.model.active_head == "head_toy"
    assert str(mbert.model.active_adapters) == "Stack[ad_news]"
    # the predicted labels are those of the domain's own scheme
    types = {e.entity_group for s in mbert.predict(SENTENCES * 4, "travel") for e in s}
    assert types == {"LOC"}, types  # something is tagged, and only with the domain's own scheme


def test_wrong_or_missing_names_raise(core):
    mbert = build(core)
    with pytest.raises(MultiBertError, match="unknown domain 'politics'"):
        mbert.predict(SENTENCES, "politics")
    with pytest.raises(MultiBertError, match="unknown domain"):
        mbert.predict_mixed(SENTENCES, ["news", "politics"])
    mbert.model.delete_adapter("ad_sports")  # the model and its bookkeeping disagree: no silent bare core
    with pytest.raises(MultiBertError, match="adapter 'ad_sports' is missing"):
        mbert.predict(SENTENCES, "sports")
    mbert.model.delete_head("head_places")
    with pytest.raises(MultiBertError, match="head 'head_places' is missing"):
        mbert.predict(SENTENCES, "travel")
    with pytest.raises(MultiBertError, match="no router"):
        mbert.classify(["text"])
    with pytest.raises(TypeError, match="list of sentences"):
        mbert.predict("mary visited paris", "news")


def test_adapters_change_predictions(core):
    mbert = build(core)
    news, sports = mbert.predict(SENTENCES * 3, "news"), mbert.predict(SENTENCES * 3, "sports")
    logits = {}
    for domain in ("news", "sports"):
        mbert.activate(domain)
        with torch.no_grad():
            logits[domain] = mbert.model(**mbert.tokenizer(["mary visited paris"], return_tensors="pt")).logits
    assert not torch.allclose(logits["news"], logits["sports"])
    assert len(news) == len(sports) == 6


def test_parameter_counts(core):
    mbert = build(core)
    # LoRA r=3 on query and value of 2 layers, hidden 32: 2 layers x 2 matrices x (3x32 + 32x3)
    assert mbert.adapter_parameters("news") == 2 * 2 * (3 * 32 + 32 * 3)
    assert mbert.head_parameters("toy") == 32 * 7 + 7 and mbert.head_parameters("places") == 32 * 3 + 3
    core_only = sum(p.numel() for p in mbert.model.base_model.parameters()) - 3 * mbert.adapter_parameters("news")
    assert mbert.core_parameters() == core_only
    prefix = build(core, "prefix")
    # the reparametrized prefix trains an MLP; ejected, only the prefix remains: 4 x 2 layers x (key, value) x 32
    assert prefix.adapter_parameters("news") > 4 * 2 * 2 * 32
    assert prefix.eject_prefix("news") and not prefix.eject_prefix("news")
    assert prefix.adapter_parameters("news") == 4 * 2 * 2 * 32


def test_eject_prefix_keeps_the_output(core):
    mbert = build(core, "prefix")
    before = mbert.predict(SENTENCES, "news")
    mbert.activate("news")
    inputs = mbert.tokenizer(["mary visited paris today"], return_tensors="pt")
    with torch.no_grad():
        logits = mbert.model(**inputs).logits
        mbert.eject_prefix("news")
        mbert.activate("news")
        assert torch.allclose(mbert.model(**inputs).logits, logits, atol=1e-5)
    assert as_tuples(mbert.predict(SENTENCES, "news")) == as_tuples(before)
    assert mbert.adapter_specs["news"].prefix_flat


def test_copy_adapter(core):
    mbert = build(core)
    mbert.copy_adapter("news", "sports")
    assert as_tuples(mbert.predict(SENTENCES * 3, "sports")) == as_tuples(mbert.predict(SENTENCES * 3, "news"))
    with pytest.raises(MultiBertError, match="unknown domain"):
        mbert.copy_adapter("news", "nowhere")


@pytest.mark.parametrize("kind", ["lora", "prefix"])
def test_save_load_identical_predictions(core, tmp_path, kind):
    mbert = build(core, kind)
    if kind == "prefix":
        mbert.eject_prefix("sports")  # one ejected, one still reparametrized: both must round-trip
    mbert.add_general("toy", AdapterSpec(kind, prefix_length=4, prefix_bottleneck_size=16))
    mbert.add_router(["news", "sports", "travel"], AdapterSpec(kind, prefix_length=4, prefix_bottleneck_size=16),
                     max_length=64, threshold=0.4)
    randomize(mbert)
    mbert.router_dtype = "float32"  # the ejected prefix must give the same probabilities to 1e-6
    texts = ["Mary visited Paris today.", "arsenal beat bayern in london"]
    if kind == "prefix":
        before = mbert.classify(texts)
        assert mbert.eject_prefix("router")
        after = mbert.classify(texts)
        assert all(row[d] == pytest.approx(old[d], abs=1e-6) for row, old in zip(after, before) for d in row)
    expected = {d: as_tuples(mbert.predict(SENTENCES + texts, d)) for d in mbert.domains}
    path = mbert.save(tmp_path / "model")
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    weights = "pytorch_adapter.bin" if kind == "prefix" else "adapter.safetensors"
    assert f"adapters/news/{weights}" in files and "heads/toy/model_head.safetensors" in files
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["domains"]["travel"]["scheme"] == "places" and manifest["general"] == {"toy": "general-toy"}
    loaded = MultiBertModel.load(path, router_dtype="float32")
    for domain, predictions in expected.items():
        assert as_tuples(loaded.predict(SENTENCES + texts, domain)) == predictions, domain
    assert loaded.classify(texts) == mbert.classify(texts)
    assert loaded.router_threshold == 0.4 and loaded.general == {"toy": "general-toy"}
    assert not list(tmp_path.glob(".model.*"))  # no staging folder left behind
    mbert.save(path)  # saving over a saved model replaces it
    assert as_tuples(MultiBertModel.load(path).predict(SENTENCES, "news")) == expected["news"][:len(SENTENCES)]


def test_load_guards(core, tmp_path):
    mbert = build(core)
    path = mbert.save(tmp_path / "model")
    other_core = build_tiny_core(tmp_path / "other_core", seed=7)
    with pytest.raises(MultiBertError, match="trained on another core"):
        MultiBertModel.load(path, core_model=str(other_core))
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["schemes"]["places"] = ["O", "B-GPE", "I-GPE"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(MultiBertError, match="has labels"):
        MultiBertModel.load(path)
    manifest["schemes"]["places"] = ["O", "B-LOC", "I-LOC"]
    manifest["domains"]["politics"] = manifest["domains"]["news"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(MultiBertError, match="adapters/politics is missing"):
        MultiBertModel.load(path)
    with pytest.raises(MultiBertError, match="not a saved Multi-BERT model"):
        MultiBertModel.load(tmp_path)
    # transformers' pipeline must not mistake the folder for a model (it would add a random head)
    from transformers import pipeline

    with pytest.raises((OSError, ValueError)):
        pipeline("token-classification", model=str(path))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(MultiBertError, match="refusing to overwrite"):
        mbert.save(tmp_path / "notes")


def test_predict_mixed_groups_by_domain(core, monkeypatch):
    mbert = build(core)
    expected = {d: as_tuples(mbert.predict(SENTENCES, d)) for d in ("news", "travel")}
    calls = []
    original = MultiBertModel.activate
    monkeypatch.setattr(MultiBertModel, "activate", lambda self, d: calls.append(d) or original(self, d))
    mixed = mbert.predict_mixed(SENTENCES * 3, ["news", "travel"] * 3)
    assert sorted(calls) == ["news", "travel"]  # one activation per domain group, not per sentence
    assert as_tuples(mixed) == [expected["news"][0], expected["travel"][1]] * 3


def test_training_domain_fixture_is_consistent():
    domain = make_domain("news", "toy")
    assert all(s.spans for s in domain.train) and len(domain.train) == 24


# --- LoRA capacity: target matrices, and what "% of the core" counts ----------------------------------------


def test_lora_targets_count_and_round_trip(core, tmp_path):
    """LoRA on q, k, v and both feed-forward projections: the parameter count is exactly those matrices' low-rank
    factors, and a saved set records the targets and reloads with identical predictions."""
    wide = AdapterSpec("lora", lora_r=2, lora_alpha=4, lora_attn_matrices=("q", "k", "v"), lora_intermediate=True,
                       lora_output=True)
    ffn_only = AdapterSpec("lora", lora_r=2, lora_attn_matrices=(), lora_output=True)
    mbert = MultiBertModel.from_core(str(core), max_length=32)
    mbert.add_scheme("toy", TYPES)
    mbert.add_domain("news", "toy", wide)
    mbert.add_domain("sports", "toy", ffn_only)
    mbert.add_domain("travel", "toy")  # the default: q and v
    randomize(mbert)
    hidden, inner, layers, r = 32, 64, 2, 2
    attention = 3 * r * (hidden + hidden)
    assert mbert.adapter_parameters("news") == layers * (attention + r * (hidden + inner) + r * (inner + hidden))
    assert mbert.adapter_parameters("sports") == layers * r * (inner + hidden)
    assert mbert.adapter_parameters("travel") == layers * 2 * 3 * (hidden + hidden)
    expected = {d: as_tuples(mbert.predict(SENTENCES, d)) for d in ("news", "sports", "travel")}
    path = mbert.save(tmp_path / "model")
    entry = json.loads((path / MANIFEST).read_text())["domains"]["news"]["adapter"]
    assert entry["lora_attn_matrices"] == ["q", "k", "v"] and entry["lora_intermediate"] and entry["lora_output"]
    loaded = MultiBertModel.load(path)
    assert loaded.adapter_specs["news"] == wide and loaded.adapter_specs["sports"] == ffn_only
    for domain, predictions in expected.items():
        assert as_tuples(loaded.predict(SENTENCES, domain)) == predictions, domain
    with pytest.raises(MultiBertError, match="does not wrap the attention output"):
        AdapterSpec(lora_attn_matrices=("q", "o"))
    with pytest.raises(MultiBertError, match="needs a target"):
        AdapterSpec(lora_attn_matrices=())


def test_manifest_without_lora_targets_still_loads(core, tmp_path):
    """Sets saved before the target fields existed (LoRA on q and v) load with those defaults."""
    mbert = build(core)
    expected = as_tuples(mbert.predict(SENTENCES, "news"))
    path = mbert.save(tmp_path / "model")
    manifest = json.loads((path / MANIFEST).read_text())
    for entry in manifest["domains"].values():
        for key in ("lora_attn_matrices", "lora_intermediate", "lora_output"):
            del entry["adapter"][key]
    (path / MANIFEST).write_text(json.dumps(manifest))
    loaded = MultiBertModel.load(path)
    assert loaded.adapter_specs["news"] == AdapterSpec(prefix_length=4, prefix_bottleneck_size=16)
    assert as_tuples(loaded.predict(SENTENCES, "news")) == expected


def test_core_embedding_parameters(core):
    mbert = MultiBertModel.from_core(str(core))
    config = mbert.model.config
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * 32 + 2 * 32
    assert mbert.core_embedding_parameters() == embeddings < mbert.core_parameters()
