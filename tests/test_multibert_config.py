"""Multi-BERT configuration: YAML plus CLI overrides, unknown keys, domain specs and data loading."""

import pytest

from ner_adapters.multibert.config import ConfigError, parse_config
from ner_adapters.multibert.domains import load_domains, parse_domain_specs, parse_type_map, scheme_types


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_then_cli_overrides(tmp_path):
    path = write(tmp_path, "adapter_kind: prefix\nnum_train_epochs: 4\ndomains: [parsner:health, parsner:art]\n"
                           "prefix_flat: true\nconfidence_threshold: 0.7\n")
    config = parse_config([str(path), "--num_train_epochs", "2", "--lora_r", "5"])
    assert config.model.adapter_kind == "prefix" and config.model.prefix_flat is True
    assert config.training.num_train_epochs == 2  # the command line wins
    assert config.model.lora_r == 5 and config.router.confidence_threshold == 0.7
    assert config.data.domains == ["parsner:health", "parsner:art"]
    # the defaults where nothing is said: the paper's batch and LoRA, the adapter lr that trains at alpha/r = 1/3
    assert (config.training.learning_rate, config.training.per_device_train_batch_size) == (5e-3, 16)
    assert config.training.full_learning_rate == 1e-4 and config.training.early_stopping_min_epochs == 3
    assert (config.model.lora_attn_matrices, config.router.router_pooling) == (["q", "v"], "mean")
    assert (config.model.lora_alpha, config.model.prefix_length, config.training.num_train_epochs) == (1, 22, 2)


def test_unknown_yaml_key_raises_naming_key_and_file(tmp_path):
    path = write(tmp_path, "lora_r: 3\nlora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml:2: unknown key 'lora_rank'"):
        parse_config([str(path)])


@pytest.mark.parametrize("text,message", [
    ("lora_r: three\n", r"cfg\.yaml:1: key 'lora_r': .*invalid int value: 'three'"),
    ("adapter_kind: ia3\n", r"cfg\.yaml:1: key 'adapter_kind': .*invalid choice"),
    ("domains: parsner:health\n", r"cfg\.yaml:1: key 'domains' takes a list"),
    ("lora_r: [3]\n", r"key 'lora_r' takes one value"),
    ("schemes: {parsner: x}\n", r"key 'schemes' must be a scalar or a list"),
    ("variants: [multibert, chatgpt]\n", r"variants: 'chatgpt' is not one of"),
    ("variants: []\n", r"key 'variants' cannot be an empty list"),
    ("- a\n- b\n", r"top level must be a mapping"),
    ("router_train_stride: 9\n", r"router_train_stride must be between 1 and group_size \(8\)"),
])
def test_bad_values_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config([str(write(tmp_path, text))])


def test_unknown_cli_argument_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="--lora_rank"):
        parse_config([str(write(tmp_path, "lora_r: 3\n")), "--lora_rank", "8"])
    with pytest.raises(ConfigError, match="not found"):
        parse_config([str(tmp_path / "missing.yaml")])


def test_recipe_configs_parse():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "recipes" / "multibert"
    names = sorted(p.name for p in folder.glob("*.yaml"))
    assert {"default.yaml", "parsner_lora.yaml", "parsner_prefix.yaml", "formal_informal.yaml", "gum_genres.yaml",
            "uner_genres.yaml", "uner_genres_e5.yaml"} <= set(names)
    for name in names:
        config = parse_config([str(folder / name)])
        parse_domain_specs(config.data.domains, config.data.schemes)


def test_domain_specs_expand_and_name():
    specs = parse_domain_specs(["uner_en_ewt:*", "parstwiner=tweets", "arman:fold2"])
    assert [s.name for s in specs] == ["answers", "email", "newsgroup", "reviews", "weblog", "tweets", "fold2"]
    assert {s.scheme for s in specs} == {"uner_en_ewt", "parstwiner", "arman"}
    merged = parse_domain_specs(["arman=formal", "parstwiner=informal"], ["arman=fa", "parstwiner=fa"])
    assert [(s.name, s.scheme) for s in merged] == [("formal", "fa"), ("informal", "fa")]


@pytest.mark.parametrize("domains,message", [
    (["nosuch:x"], "unknown dataset 'nosuch'"),
    (["parsner:cooking"], "parsner has no domain 'cooking'"),
    (["parsner:health", "parsner:health"], "two domains are named 'health'"),
    (["parsner:*=x"], "cannot be renamed"),
    (["parsner:health=bad name"], "may only contain"),
])
def test_bad_domain_specs(domains, message):
    with pytest.raises(ConfigError, match=message):
        parse_domain_specs(domains)


def test_type_map_builds_one_scheme():
    specs = parse_domain_specs(["arman", "parstwiner"], ["arman=fa", "parstwiner=fa"])
    mapping = ["arman:pers=PER", "arman:org=ORG", "arman:loc=LOC", "arman:event=EVE", "arman:fac=FAC",
               "arman:pro=PRO"]
    assert scheme_types(specs, mapping) == {"fa": ("PER", "ORG", "LOC", "FAC", "PRO", "EVE", "NAT", "POG")}
    with pytest.raises(ConfigError, match="arman has no entity type 'person'"):
        parse_type_map(["arman:person=PER"])
    with pytest.raises(ConfigError, match="not of the form DATASET:KEY=VALUE"):
        parse_type_map(["arman=PER"])


def test_load_domains_carves_train_and_dev_from_uner_dev_split(tmp_path):
    config = parse_config([str(write(tmp_path, "domains: [uner_en_ewt:weblog, uner_en_ewt:email]\n"
                                                "max_test_sentences: 50\n"))])
    schemes, domains = load_domains(config.data)
    assert schemes == {"uner_en_ewt": ("PER", "ORG", "LOC")}
    weblog = domains[0]
    assert weblog.name == "weblog" and len(weblog.train) + len(weblog.dev) == 231  # the genre's dev split
    assert abs(len(weblog.dev) - 0.15 * 231) <= 1 and len(weblog.test) == 50
    assert not {s.id for s in weblog.train} & {s.id for s in weblog.dev}
    again = load_domains(config.data)[1][0]
    assert [s.id for s in again.dev] == [s.id for s in weblog.dev]  # seeded


def test_domain_from_datasets_checks_columns_and_label_set():
    from ner_adapters.data import DataFormatError, load_ner_dataset
    from ner_adapters.multibert import DomainData

    weblog = load_ner_dataset("uner_en_ewt", "weblog", split="test")
    domain = DomainData.from_datasets("weblog", "uner", weblog, weblog, weblog, types=["PER", "ORG", "LOC"])
    assert len(domain.train) == 214 and domain.train[0].domain == "weblog"
    with pytest.raises(DataFormatError, match=r"train split: its label set has type\(s\) \['ORG'\]"):
        DomainData.from_datasets("weblog", "people", weblog, weblog, weblog, types=["PER", "LOC"])
    with pytest.raises(DataFormatError, match=r"missing the column\(s\) \['spans'\]"):
        DomainData.from_datasets("weblog", "uner", weblog.remove_columns("spans"), weblog, weblog)


def test_no_variant_at_all_is_refused_in_code_too():
    from ner_adapters.multibert.config import MultiBertTrainingArguments

    with pytest.raises(ConfigError, match="variants: name at least one of"):
        MultiBertTrainingArguments(variants=[])


def test_every_recipe_convention_config_files_layered_then_the_command_line(tmp_path):
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base.write_text("domains: [uner_en_ewt:email]\nlora_r: 3\nnum_train_epochs: 4\n")
    overlay.write_text("lora_r: 8\n")
    config = parse_config(["--config", str(base), "--config", str(overlay), "--num_train_epochs", "2"])
    assert (config.model.lora_r, config.training.num_train_epochs) == (8, 2)
    assert config.data.domains == ["uner_en_ewt:email"] and config.source == f"{base}, {overlay}"
    assert parse_config([str(base)]).model.lora_r == 3  # a first positional file is one --config
    with pytest.raises(ConfigError, match="--config needs a file"):
        parse_config(["--config"])
    overlay.write_text("lora_rr: 8\n")
    with pytest.raises(ConfigError, match=r"overlay\.yaml:1: unknown key 'lora_rr'; did you mean 'lora_r'"):
        parse_config(["--config", str(base), "--config", str(overlay)])


def test_parsner_prefix_is_parsner_lora_with_prefixes():
    """parsner_prefix.yaml says it is parsner_lora.yaml with flat prefixes: the two must not drift apart."""
    import dataclasses
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "recipes" / "multibert"
    lora, prefix = (parse_config([str(folder / f"parsner_{kind}.yaml")]) for kind in ("lora", "prefix"))
    assert prefix.model.adapter_kind == "prefix" and prefix.model.prefix_flat is True
    allowed = {"model": {"adapter_kind", "prefix_flat", "lora_r", "lora_alpha", "lora_attn_matrices",
                         "lora_intermediate", "lora_output"},
               "training": {"learning_rate", "output_dir", "variants"}, "router": {"train_router"}, "data": set()}
    for section, may_differ in allowed.items():
        a, b = dataclasses.asdict(getattr(lora, section)), dataclasses.asdict(getattr(prefix, section))
        assert {k for k in a if a[k] != b[k]} <= may_differ, section
