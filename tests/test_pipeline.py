"""``ner_adapters.pipeline``: a real transformers Pipeline over Multi-BERT adapters (one, several, routed) and
CLLMFS adapters; aggregation strategies, batching, threads, and adapters of another base model refused."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
import transformers

from hub_tiny import EXAMPLE
from multibert_tiny import build_tiny_core, one_torch_thread
from scripted_answers import ScriptedAnswers
from ner_adapters import pipeline
from ner_adapters.cllmfs import CLLMFSExtractor
from ner_adapters.cllmfs.artifact import AdapterMismatchError
from ner_adapters.hub.layout import ArtifactError, export_domain_adapter
from ner_adapters.multibert import DomainRouter, MultiBertError, MultiBertModel

SUBWORDS = "mary playing jumped visiting paris"  # 'playing' and 'jumped' split into two WordPieces


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def mbert(multibert_run):
    return MultiBertModel.load(multibert_run.model_dir)


@pytest.fixture(scope="module")
def ner(multibert_run):
    return pipeline("token-classification", model=multibert_run.core_id, adapter=str(multibert_run.model_dir))


@pytest.fixture(scope="module")
def exported(multibert_run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exported")
    return {d: export_domain_adapter(multibert_run.model_dir, d, root / d)
            for d in ("email", "reviews", "newsgroup", "general-uner_en_ewt")}


def _approx(entities):
    return [{**e, "score": pytest.approx(e["score"], abs=1e-5)} for e in entities]


def test_a_real_pipeline_whose_simple_output_is_multibert_predict(ner, mbert):
    assert isinstance(ner, transformers.Pipeline) and ner.task == "token-classification"
    assert ner.has_router and ner.domains == ["email", "reviews", "newsgroup", "general-uner_en_ewt"]
    long = " ".join(["john scored twice for arsenal in london and mary visited paris"] * 4)  # > max_length=32
    assert len(mbert.tokenizer(long.split(), is_split_into_words=True)["input_ids"]) > mbert.max_length
    sentences = ["mary visited paris today .", SUBWORDS, "john scored twice for arsenal in london .", long]
    for domain in ner.domains:
        expected = [[e.as_dict() for e in row] for row in mbert.predict(sentences, domain)]
        for sentence, entities in zip(sentences, expected):
            found = ner(sentence, domain=domain)
            assert found == _approx(entities)
            assert all(sentence[e["start"]:e["end"]] == e["word"] for e in found)
    # adapters really differ, or the tests of mixing below could not fail
    assert ner(sentences[2], domain="email") != ner(sentences[2], domain="reviews")


def _word_probabilities(mbert, domain, words):
    encoding = mbert.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad(), mbert.active(domain) as labels:
        probabilities = torch.softmax(mbert.model(**encoding).logits[0].float(), dim=-1)
    positions: dict[int, list[int]] = {}
    for position, word in enumerate(encoding.word_ids(0)):
        if word is not None:
            positions.setdefault(word, []).append(position)
    return probabilities, positions, labels, encoding


def test_aggregation_strategies(ner, mbert):
    words = SUBWORDS.split()
    probabilities, positions, labels, encoding = _word_probabilities(mbert, "email", words)
    assert any(len(p) > 1 for p in positions.values())
    expected_none = []
    for word, word_positions in positions.items():
        for position in word_positions:
            label = labels[int(probabilities[position].argmax())]
            if label != "O":
                expected_none.append((label, position))
    none = ner(SUBWORDS, domain="email", aggregation_strategy="none")
    assert [(e["entity"], e["index"]) for e in none] == expected_none
    tokens = mbert.tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    for entity in none:
        assert entity["word"] == tokens[entity["index"]]
        assert SUBWORDS[entity["start"]:entity["end"]] == entity["word"].removeprefix("##")
    assert ner(SUBWORDS, domain="email", aggregation_strategy="first") == ner(SUBWORDS, domain="email")

    def labels_of(strategy):  # word labels back from the entities: B-/I- per word
        out = ["O"] * len(words)
        starts = [SUBWORDS.index(w) if i == 0 else None for i, w in enumerate(words)]
        offset = 0
        for i, w in enumerate(words):
            starts[i] = SUBWORDS.index(w, offset)
            offset = starts[i] + len(w)
        for entity in ner(SUBWORDS, domain="email", aggregation_strategy=strategy):
            inside = [i for i, s in enumerate(starts) if entity["start"] <= s < entity["end"]]
            for n, i in enumerate(inside):
                out[i] = ("B-" if n == 0 else "I-") + entity["entity_group"]
        return out

    def normalise(tags):  # the IOB2 reading: an I- without its entity starts one
        from ner_adapters.spans import tags_to_spans

        out = ["O"] * len(tags)
        for span in tags_to_spans(tags, "IOB2", mode="repair"):
            for i in range(span.start, span.end):
                out[i] = ("B-" if i == span.start else "I-") + span.type
        return out

    average = [labels[int(probabilities[positions[i]].mean(0).argmax())] for i in range(len(words))]
    best = [labels[int(max((probabilities[p] for p in positions[i]), key=lambda d: float(d.max())).argmax())]
            for i in range(len(words))]
    assert labels_of("average") == normalise(average)
    assert labels_of("max") == normalise(best)
    with pytest.raises(ValueError, match="aggregation_strategy must be one of"):
        ner(SUBWORDS, domain="email", aggregation_strategy="longest")
    assert ner(SUBWORDS, domain="email", aggregation_strategy=transformers.pipelines.AggregationStrategy.FIRST) == \
        ner(SUBWORDS, domain="email")


def test_auto_routing_reports_the_domain(ner, mbert):
    router = DomainRouter(mbert)
    for text in (EXAMPLE, "we flew from london to tehran .", "  "):
        routed = router.tag(text)
        answer = ner(text, return_domain=True)
        assert answer["domain"] == routed.decision.domain and answer["adapter"] == routed.decision.adapter
        assert answer["domain_score"] == pytest.approx(routed.decision.probability)
        assert answer["probabilities"] == pytest.approx(routed.decision.probabilities)
        assert answer["entities"] == _approx([e.as_dict() for s in routed.sentences for e in s.entities])
        plain = ner(text)  # routed entities carry the decision
        assert [{k: v for k, v in e.items() if k not in ("domain", "domain_score")} for e in plain] == answer["entities"]
        assert all(e["domain"] == answer["domain"] and e["domain_score"] == answer["domain_score"] for e in plain)
        assert ner(text, domain="auto") == plain
    explicit = ner(EXAMPLE, domain="reviews", return_domain=True)
    assert (explicit["domain"], explicit["domain_score"], explicit["probabilities"]) == ("reviews", None, None)


def test_router_dtype_reaches_the_classifier(multibert_run, ner):
    lowered = pipeline("token-classification", model=multibert_run.core_id, adapter=str(multibert_run.model_dir),
                       router_dtype="bfloat16")
    exact_ner = pipeline("token-classification", model=multibert_run.core_id, adapter=str(multibert_run.model_dir),
                         router_dtype="float32")
    assert (lowered.mbert.router_dtype, exact_ner.mbert.router_dtype, ner.mbert.router_dtype) == \
        ("bfloat16", "float32", "auto")
    answer, exact = lowered(EXAMPLE, return_domain=True), exact_ner(EXAMPLE, return_domain=True)
    assert answer["domain"] == exact["domain"]
    assert answer["probabilities"] == pytest.approx(exact["probabilities"], abs=0.05)
    with pytest.raises(Exception, match="router_dtype"):
        pipeline("token-classification", model=multibert_run.core_id, adapter=str(multibert_run.model_dir),
                 router_dtype="int4")


def test_batches_and_lists_match_single_calls(ner):
    texts = [EXAMPLE, "we flew from london to tehran .", "", SUBWORDS, "sara loved the food in shiraz ."]
    single = [ner(t) for t in texts]
    assert ner(texts) == single
    assert ner(texts, batch_size=4) == [_approx(row) for row in single]
    assert ner(texts, batch_size=3, domain="reviews") == [_approx(ner(t, domain="reviews")) for t in texts]
    assert ner((t for t in texts), batch_size=2) is not None  # generators work as in transformers
    assert list(ner((t for t in texts), batch_size=2)) == [_approx(row) for row in single]


def test_a_list_of_domain_adapters(multibert_run, exported, ner):
    listed = pipeline("token-classification", model=multibert_run.core_id,
                      adapter=[str(exported["email"]), str(exported["reviews"])])
    assert not listed.has_router and listed.domains == ["email", "reviews"]
    for domain in ("email", "reviews"):
        assert listed(EXAMPLE, domain=domain) == ner(EXAMPLE, domain=domain)
    with pytest.raises(ValueError, match="several domain adapters are loaded .*pass domain="):
        listed(EXAMPLE)
    with pytest.raises(MultiBertError, match="unknown domain 'news'"):
        listed(EXAMPLE, domain="news")
    with pytest.raises(ValueError, match="needs a domain classifier"):
        listed(EXAMPLE, domain="auto")
    one = pipeline("token-classification", model=multibert_run.core_id, adapter=str(exported["reviews"]))
    assert one(EXAMPLE) == ner(EXAMPLE, domain="reviews")  # a single adapter needs no domain=


def test_concurrent_calls_never_mix_adapters(multibert_run, exported):
    pipe = pipeline("token-classification", model=multibert_run.core_id,
                    adapter=[str(exported["email"]), str(exported["reviews"]), str(multibert_run.model_dir)])
    texts = [EXAMPLE, "john scored twice for arsenal in london .", SUBWORDS]
    domains = ("email", "reviews", "newsgroup", "general-uner_en_ewt", "auto")
    calls = [(text, domain) for text in texts for domain in domains]
    expected = {call: pipe(call[0], domain=call[1]) for call in calls}
    assert len({repr(v) for (t, d), v in expected.items() if t == texts[1] and d != "auto"}) == 4
    failures, barrier = [], threading.Barrier(8)

    def worker(seed: int):
        barrier.wait()
        for n in range(12):
            text, domain = calls[(seed * 5 + n) % len(calls)]
            try:
                got = pipe(text, domain=domain)
            except Exception as err:  # a thread's exception would otherwise only be a warning
                failures.append((text, domain, repr(err)))
                continue
            if got != expected[(text, domain)]:
                failures.append((text, domain, "mixed up"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_adapters_of_another_core_are_refused(multibert_run, exported, tmp_path):
    other = build_tiny_core(tmp_path / "other-core", extra_words=["playing", "jumped"], seed=7)  # same shapes
    with pytest.raises(AdapterMismatchError, match="trained on the core 'tester/tiny-bert-core-.*whose weights differ"):
        pipeline("token-classification", model=str(other), adapter=str(exported["email"]))
    with pytest.raises(AdapterMismatchError, match="trained on the core"):
        pipeline("token-classification", model=str(other), adapter=str(multibert_run.model_dir))


def test_what_is_not_an_adapter_is_refused(multibert_run, tmp_path):
    with pytest.raises(ArtifactError, match="one adapter inside a saved Multi-BERT model.*domain='email'"):
        pipeline("token-classification", model=multibert_run.core_id,
                 adapter=str(multibert_run.model_dir / "adapters" / "email"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a ner-adapters artifact"):
        pipeline("token-classification", adapter=str(tmp_path / "empty"))
    with pytest.raises(ArtifactError, match="neither an existing folder nor a Hub repo id"):
        pipeline("token-classification", adapter="no such folder")
    with pytest.raises(ArtifactError, match="the Hub has no repo 'tester/missing-adapter'"):
        pipeline("token-classification", adapter="tester/missing-adapter", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="pass adapter="):
        pipeline("token-classification", model=multibert_run.core_id)
    with pytest.raises(ValueError, match="supports the task 'token-classification'"):
        pipeline("text-generation", adapter=str(multibert_run.model_dir))
    with pytest.raises(ValueError, match="entity_types= is for CLLMFS adapters"):
        pipeline("token-classification", adapter=str(multibert_run.model_dir), entity_types=["person"])
    with pytest.raises(NotImplementedError, match="push_to_hub"):
        pipeline("token-classification", adapter=str(multibert_run.model_dir)).save_pretrained(tmp_path / "saved")


def test_auto_needs_a_router(multibert_run, exported, ner):
    routed = pipeline("token-classification", model=str(multibert_run.model_dir), adapter="auto")
    assert routed(EXAMPLE, return_domain=True) == ner(EXAMPLE, return_domain=True)
    with pytest.raises(ArtifactError, match="needs a domain classifier"):
        pipeline("token-classification", model=str(exported["email"]), adapter="auto")
    with pytest.raises(ValueError, match="pass it as model="):
        pipeline("token-classification", adapter="auto")


def test_cllmfs_adapters_through_the_same_entry_point(cllmfs_run, tiny_llm_dir, smollm2_dir):
    folder = str(cllmfs_run.adapter_dir)
    ner = pipeline("token-classification", model=str(tiny_llm_dir), adapter=folder, entity_types=["person", "location"])
    assert isinstance(ner, transformers.Pipeline)
    assert [t.label for t in ner.entity_types] == ["person", "location"]
    assert ner.entity_types == cllmfs_run.types  # known labels keep the descriptions they were trained with
    reference = CLLMFSExtractor.from_pretrained(str(tiny_llm_dir), adapter=folder)
    # The tiny adapter is untrained: its answers are scripted, so the comparisons below compare entities (and the
    # scores each side's model gives them), not two empty lists.
    script = {"Person": ["Ali", "Sara"], "Location": ["Rome", "Paris", "London"]}
    ner.extractor.make_logits_processors = lambda: [ScriptedAnswers(ner.tokenizer, script)]
    reference.make_logits_processors = lambda: [ScriptedAnswers(reference.tokenizer, script)]
    texts = ["Ali met Sara in Rome", "we flew from Paris to London"]
    for text in texts:
        assert ner(text) == reference(text) and len(ner(text)) in (3, 2)
        for entity in ner(text):
            assert text[entity["start"]:entity["end"]] == entity["word"]
    batched = ner(texts, batch_size=2)  # padded together: the same entities, scores equal up to float rounding
    for row, text in zip(batched, texts):
        alone = reference(text)
        assert [{**e, "score": 0} for e in row] == [{**e, "score": 0} for e in alone]
        assert [e["score"] for e in row] == pytest.approx([e["score"] for e in alone], rel=1e-4)
    drug = {"drug": "the name of a medication"}
    script["Drug"] = ["Rome"]
    assert ner(texts[0], entity_types=drug) == reference(texts[0], entity_types=drug)
    assert [(e["entity_group"], e["word"]) for e in ner(texts[0], entity_types=drug)] == [("drug", "Rome")]
    script["Person"] = ["Ali met Sara"]
    words = ner("Ali met Sara in Rome", aggregation_strategy="none")
    grouped = ner("Ali met Sara in Rome")
    assert len(grouped) == 2 and len(words) == 4  # "Ali met Sara" is three words
    for entry in words:
        assert entry["entity"][:2] in ("B-", "I-") and "Ali met Sara in Rome"[entry["start"]:entry["end"]] == entry["word"]
    assert sum(e["entity"].startswith("B-") for e in words) == len(grouped)
    with pytest.raises(AdapterMismatchError, match=f"adapter {folder} was trained on .*architecture differs"):
        pipeline("token-classification", model=str(smollm2_dir), adapter=folder)
    with pytest.raises(ArtifactError, match="CLLMFS adapter is loaded on its own"):
        pipeline("token-classification", adapter=[folder, folder])


def test_package_export_is_the_function():
    import ner_adapters

    assert ner_adapters.pipeline is pipeline and callable(pipeline)


def test_entity_types_alone_load_the_default_zero_shot_adapter(cllmfs_run, hub_api, monkeypatch):
    """``pipeline(entity_types=...)`` without ``adapter=`` loads the default CLLMFS adapter (here: a local-Hub repo
    named by the environment variable); one that cannot be fetched says how to choose another."""
    import yaml

    from hub_tiny import push_model_folder
    from ner_adapters import pipelines

    push = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "push" / "zero_shot.yaml").read_text())
    published = f"{push['namespace']}/{push['repo_prefix']}-cllmfs-{Path(push['cllmfs_runs'][0]).name}"
    assert pipelines.DEFAULT_CLLMFS_ADAPTER == published  # the id the push recipe publishes to
    monkeypatch.setenv(pipelines.DEFAULT_CLLMFS_ENV, push_model_folder(hub_api, cllmfs_run.adapter_dir, "zero-shot"))
    ner = pipeline("ner", entity_types={"drug": "the name of a medication"})
    assert isinstance(ner, pipelines.CLLMFSTokenClassificationPipeline)
    assert [t.label for t in ner.entity_types] == ["drug"]
    monkeypatch.setenv(pipelines.DEFAULT_CLLMFS_ENV, "tester/no-such-adapter")
    with pytest.raises(ArtifactError, match="default zero-shot CLLMFS adapter 'tester/no-such-adapter'.*"
                                            "NER_ADAPTERS_CLLMFS_ADAPTER"):
        pipeline("ner", entity_types=["drug"])
    with pytest.raises(ValueError, match="or only entity_types="):
        pipeline("ner")
