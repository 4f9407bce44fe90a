"""Multi-BERT over your own domains (issue 14): domain entries naming their data and scheme, and a router
trained over any domains, with no dummy schemes or adapters."""

from __future__ import annotations

import pytest

from multibert_tiny import make_sentences, one_torch_thread

from ner_adapters.multibert.config import ConfigError, parse_config
from ner_adapters.multibert.domains import load_domains
from ner_adapters.spans import spans_to_tags


def write_domain(folder, template, sizes=(24, 8, 8), dev_name="dev"):
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", sizes[0], 0), (dev_name, sizes[1], 1), ("test", sizes[2], 2)):
        sentences = make_sentences(template, n, seed)
        (folder / f"{split}.conll").write_text("".join(
            "".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, spans_to_tags(s.spans, len(s.tokens)))) + "\n"
            for s in sentences), encoding="utf-8")
    return folder


def test_domain_entries_name_their_data_and_scheme(tmp_path, monkeypatch):
    write_domain(tmp_path / "data" / "legal", "news")
    write_domain(tmp_path / "data" / "medical", "sports", dev_name="valid")
    write_domain(tmp_path / "data" / "travel-blogs", "travel")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "domains.yaml").write_text(
        "domains:\n"
        "  - {name: legal, data: data/legal, scheme: contracts}\n"
        "  - {name: medical, data: data/medical, scheme: contracts}\n"
        "  - data/travel-blogs\n"
        "  - uner_en_ewt:email\n"
        "max_dev_sentences: 4\n", encoding="utf-8")
    schemes, domains = load_domains(parse_config(["domains.yaml"]).data)
    # one head for the two contract domains (the union of their types), one per other dataset
    assert schemes == {"contracts": ("PER", "LOC", "ORG"), "travel-blogs": ("PER", "LOC"),
                       "uner_en_ewt": ("PER", "ORG", "LOC")}
    assert [(d.name, d.scheme, len(d.train), len(d.dev), len(d.test)) for d in domains[:3]] == [
        ("legal", "contracts", 24, 4, 8), ("medical", "contracts", 24, 4, 8), ("travel-blogs", "travel-blogs", 24, 4, 8)]
    assert domains[3].name == "email" and domains[3].scheme == "uner_en_ewt"
    # the same entries on the command line, as JSON
    config = parse_config(["--domains", '{"name": "legal", "data": "data/legal", "scheme": "contracts"}',
                           "data/medical=medicine"])
    assert [(d.name, d.scheme) for d in load_domains(config.data)[1]] == [("legal", "contracts"),
                                                                           ("medicine", "medical")]


def test_domain_entry_mistakes_name_the_entry(tmp_path, monkeypatch):
    write_domain(tmp_path / "data" / "legal", "news")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown: source"):
        load_domains(parse_config(["--domains", '{"name": "legal", "source": "data/legal"}']).data)
    with pytest.raises(ConfigError, match=r"entry 'data/legl': no such dataset file or folder: data/legl; did you "
                                          r"mean data/legal\?"):
        load_domains(parse_config(["--domains", "data/legl"]).data)
    with pytest.raises(ConfigError, match=r"entry 'uner-en-ewt:email'.*did you mean 'uner_en_ewt'\?"):
        load_domains(parse_config(["--domains", "uner-en-ewt:email"]).data)


def test_a_router_trains_over_domains_that_have_no_adapter(core, tmp_path):
    """The domain classifier alone, over two own-data domains: no scheme, no domain adapter, saved and reloaded."""
    from ner_adapters.multibert import MultiBertModel, make_groups, router_accuracy, train_router
    from ner_adapters.multibert.config import RouterArguments, MultiBertTrainingArguments
    from ner_adapters.multibert.router import DomainRouter

    with one_torch_thread():
        mbert = MultiBertModel.from_core(str(core), max_length=32)
        mbert.add_router(["legal", "sports"], max_length=64, threshold=0.0)
        data = {split: {"legal": make_sentences("news", n, seed), "sports": make_sentences("sports", n, seed)}
                for split, n, seed in (("train", 48, 0), ("dev", 16, 1), ("test", 16, 2))}

        def groups(split, seed=None):
            return make_groups(data[split], mbert.tokenizer, group_size=4, max_length=64, seed=seed)

        run = train_router(mbert, groups("train", 0), groups("dev"),
                           RouterArguments(group_size=4, router_max_length=64, router_learning_rate=5e-3,
                                           router_epochs=3),
                           MultiBertTrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                                             logging_steps=100, early_stopping_min_epochs=0))
        summary = run.summary()
        assert summary["train_groups"] == len(groups("train")) and "train_sentences" not in summary
        saved = mbert.save(tmp_path / "router-only")
        reloaded = MultiBertModel.load(saved)
        assert reloaded.router_domains == ["legal", "sports"] and reloaded.domain_names() == []
        before, after = router_accuracy(mbert, groups("test")), router_accuracy(reloaded, groups("test"))
        assert before == after and after["groups"] == 8
        assert DomainRouter(reloaded).route("mary visited paris today .").domain in ("legal", "sports")
