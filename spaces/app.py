"""ner-adapters demo Space: named entities from Multi-BERT domain adapters (routed or chosen) or CLLMFS.

What it loads (all optional, at least one needed), through ``ner_adapters.pipeline``:

- ``NER_SPACE_MULTIBERT``: the Multi-BERT adapters, comma-separated: a domain classifier (router) repo, domain
  adapter repos, or a saved Multi-BERT folder (``namespace/name[@revision]`` or a local path);
- ``NER_SPACE_CORE``: its core, when not the one the adapters record;
- ``NER_SPACE_CLLMFS``: a CLLMFS LoRA adapter (repo or folder); ``NER_SPACE_CLLMFS_BASE``: its LLM, when not
  the one it records.

Unset variables fall back to ``space_config.json`` next to this file (``recipes/push_space.py`` writes it
with the repos it just pushed). Limits: ``NER_SPACE_MAX_CHARS`` (default 1000 characters per text) and
``NER_SPACE_RATE_LIMIT`` (default 20 requests per minute per client address).

Run locally: ``python spaces/app.py`` (http://127.0.0.1:7860). Nothing here reaches outside hosts at start:
Gradio's analytics and the Hub's telemetry are off, the theme uses system fonts, and models come from the
configured repos or folders only.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
if (HERE / "ner_adapters").is_dir():  # the Space repo carries the package next to this file
    sys.path.insert(0, str(HERE))

import gradio as gr  # noqa: E402

logger = logging.getLogger("ner_adapters.space")

MODE_AUTO = "Automatic (domain classifier)"
MODE_DOMAIN = "Chosen domain adapter"
MODE_CLLMFS = "CLLMFS (LLM, your entity types)"
MAX_TYPES = 10
MAX_TYPE_CHARS = 40
_TYPE = re.compile(r"^[\w][\w .&'/-]*$")


class UserError(ValueError):
    """A problem with the request, explained to the user as is (never carries paths or secrets)."""


@dataclass
class SpaceConfig:
    """What the Space loads and its limits."""

    multibert: list[str] = field(default_factory=list)
    core: str | None = None
    cllmfs: str | None = None
    cllmfs_base: str | None = None
    max_chars: int = 1000
    rate_limit: int = 20
    rate_window: float = 60.0

    @classmethod
    def from_env(cls, environ=None, config_file: Path | None = None) -> "SpaceConfig":
        environ = os.environ if environ is None else environ
        config_file = HERE / "space_config.json" if config_file is None else config_file
        saved = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        multibert = environ.get("NER_SPACE_MULTIBERT")
        return cls(
            multibert=[m.strip() for m in multibert.split(",") if m.strip()] if multibert else list(saved.get("multibert") or []),
            core=environ.get("NER_SPACE_CORE") or saved.get("core"),
            cllmfs=environ.get("NER_SPACE_CLLMFS") or saved.get("cllmfs"),
            cllmfs_base=environ.get("NER_SPACE_CLLMFS_BASE") or saved.get("cllmfs_base"),
            max_chars=int(environ.get("NER_SPACE_MAX_CHARS") or saved.get("max_chars") or 1000),
            rate_limit=int(environ.get("NER_SPACE_RATE_LIMIT") or saved.get("rate_limit") or 20),
        )


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per client (sliding window)."""

    def __init__(self, limit: int, window: float = 60.0, clock=time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> float:
        """0 when the request may go ahead (and counts it), else the seconds to wait."""
        now = self.clock()
        with self._lock:
            seen = self._seen.setdefault(client, deque())
            while seen and now - seen[0] >= self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return self.window - (now - seen[0])
            seen.append(now)
            if len(self._seen) > 10_000:  # forget idle clients
                for key in [k for k, v in self._seen.items() if not v]:
                    del self._seen[key]
            return 0.0


def _safe_load(what: str, loader):
    try:
        return loader(), None
    except Exception as err:  # shown to the user as "unavailable"; the log says why, without the message's paths
        logger.error("could not load the %s: %s", what, type(err).__name__)
        return None, f"The {what} could not be loaded ({type(err).__name__})."


class Models:
    """The pipelines the Space serves."""

    def __init__(self, config: SpaceConfig):
        from ner_adapters import pipeline

        self.multibert, self.cllmfs, self.problems = None, None, []
        if config.multibert:
            self.multibert, problem = _safe_load("Multi-BERT model", lambda: pipeline(
                "token-classification", model=config.core, adapter=config.multibert, device="cpu"))
            self.problems += [problem] if problem else []
        if config.cllmfs:
            self.cllmfs, problem = _safe_load("CLLMFS model", lambda: pipeline(
                "token-classification", model=config.cllmfs_base, adapter=config.cllmfs, device="cpu"))
            self.problems += [problem] if problem else []

    def modes(self) -> list[str]:
        modes = []
        if self.multibert is not None and self.multibert.has_router:
            modes.append(MODE_AUTO)
        if self.multibert is not None:
            modes.append(MODE_DOMAIN)
        if self.cllmfs is not None:
            modes.append(MODE_CLLMFS)
        return modes

    def domains(self) -> list[str]:
        return self.multibert.domains if self.multibert is not None else []

    def default_types(self) -> str:
        return ", ".join(t.label for t in self.cllmfs.entity_types) if self.cllmfs is not None else ""


def parse_types(text: str) -> list[str]:
    types = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not types:
        raise UserError("Please list at least one entity type, for example: person, location, drug.")
    if len(types) > MAX_TYPES:
        raise UserError(f"Please ask for at most {MAX_TYPES} entity types at a time.")
    for label in types:
        if len(label) > MAX_TYPE_CHARS or not _TYPE.match(label):
            raise UserError(f"Entity types are short names (letters, digits, spaces, - and _), at most "
                            f"{MAX_TYPE_CHARS} characters each.")
    if len({t.lower() for t in types}) != len(types):
        raise UserError("Each entity type may be listed once.")
    return types


def _client(request) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "anonymous"


class Tagger:
    """Validation, rate limiting and error hygiene around the pipelines: the Space's one endpoint."""

    def __init__(self, models: Models, config: SpaceConfig):
        self.models, self.config = models, config
        self.limiter = RateLimiter(config.rate_limit, config.rate_window)

    def __call__(self, text: str, mode: str, domain: str | None, entity_types: str, request=None):
        empty = {"text": text or "", "entities": []}
        try:
            wait = self.limiter.check(_client(request))
            if wait:
                raise UserError(f"Too many requests: please wait {wait:.0f} s before trying again.")
            result = self.tag(text, mode, domain, entity_types)
        except UserError as err:
            return empty, "", f"⚠️ {err}"
        except Exception as err:  # never echo the message: it may name files or settings
            logger.error("tagging failed: %s", type(err).__name__)
            return empty, "", f"⚠️ Sorry, tagging this text failed ({type(err).__name__}). Please try another text."
        return result

    def tag(self, text: str, mode: str, domain: str | None, entity_types: str):
        text = text or ""
        if not text.strip():
            raise UserError("Please enter some text.")
        if len(text) > self.config.max_chars:
            raise UserError(f"The text has {len(text):,} characters; the limit is {self.config.max_chars:,}. "
                            "Please shorten it.")
        if mode not in self.models.modes():
            raise UserError("Please choose one of the available modes.")
        detected = ""
        if mode == MODE_CLLMFS:
            entities = self.models.cllmfs(text, entity_types=parse_types(entity_types))
        else:
            if mode == MODE_DOMAIN and domain not in self.models.domains():
                raise UserError("Please choose a domain adapter.")
            answer = self.models.multibert(text, domain=domain if mode == MODE_DOMAIN else "auto", return_domain=True)
            entities = answer["entities"]
            if mode == MODE_AUTO:
                detected = f"**Detected domain:** {answer['domain']} ({100 * answer['domain_score']:.0f}% confidence)"
                if answer["fallback"]:
                    detected += f"; unsure, so the general adapter `{answer['adapter']}` tagged it"
            else:
                detected = f"**Domain adapter:** {answer['adapter']}"
        highlighted = {"text": text, "entities": [{"entity": e["entity_group"], "start": e["start"], "end": e["end"]}
                                                  for e in entities]}
        status = f"{len(entities)} entit{'y' if len(entities) == 1 else 'ies'} found." if entities else "No entities found."
        return highlighted, detected, status


def shown_name(spec: str) -> str:
    """A model as the page shows it: a Hub id (revision dropped), or only the name of a local folder."""
    if os.path.exists(spec):
        return Path(spec).name
    return spec.split("@")[0]


def _detokenize(tokens: list[str]) -> str:
    text = " ".join(tokens)
    text = re.sub(r" ([.,!?;:%)\]}]|n't|'s|'m|'re|'ve|'ll|'d)\b", r"\1", text)
    text = re.sub(r" ([.,!?;:%)\]}])", r"\1", text)
    return re.sub(r"([(\[{$]) ", r"\1", text)


def examples(per_genre: int = 1) -> list[tuple[str, str]]:
    """Real sentences: UNER English-EWT (the web genres of the Multi-BERT model) and WNUT-17 (for CLLMFS)."""
    from ner_adapters.data import load_sentences

    def good(sentence) -> bool:
        text = " ".join(sentence.tokens)
        return len(sentence.spans) >= 2 and 8 <= len(sentence.tokens) <= 30 and "@" not in text and \
            not re.search(r"\d{4,}|http", text)

    out = []
    try:
        uner = load_sentences("uner_en_ewt", split="test")
        for genre in ("answers", "email", "newsgroup", "reviews", "weblog"):
            out += [(_detokenize(s.tokens), "uner") for s in [s for s in uner if s.domain == genre and good(s)][:per_genre]]
        out += [(_detokenize(s.tokens), "wnut17") for s in [s for s in load_sentences("wnut17", split="test")
                                                            if good(s)][:2]]
    except Exception as err:  # the demo works without examples
        logger.warning("no examples: %s", type(err).__name__)
    return out


THEME_FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_demo(models: Models, config: SpaceConfig) -> gr.Blocks:
    """The Blocks app (``demo.launch(theme=THEME)`` in :func:`main`)."""
    tagger = Tagger(models, config)
    modes = models.modes()
    with gr.Blocks(title="ner-adapters", analytics_enabled=False) as demo:
        gr.Markdown("# ner-adapters: named entities with adapters\n"
                    "Multi-BERT domain adapters on one frozen core (routed by a domain classifier, or chosen), "
                    "or CLLMFS few-shot extraction with an LLM and the entity types you name.")
        for problem in models.problems:
            gr.Markdown(f"⚠️ {problem}")
        text = gr.Textbox(label=f"Text (at most {config.max_chars:,} characters)", lines=4, elem_id="input-text",
                          placeholder="Mary Smith flew from London to Paris to meet the Google team.")
        with gr.Row():
            mode = gr.Radio(modes, value=modes[0] if modes else None, label="Model", elem_id="mode")
            domain = gr.Dropdown(models.domains(), value=(models.domains() or [None])[0], label="Domain adapter",
                                 elem_id="domain")
            types = gr.Textbox(models.default_types(), label="Entity types (CLLMFS, comma-separated)",
                               elem_id="entity-types")
        button = gr.Button("Find entities", variant="primary", elem_id="extract")
        highlighted = gr.HighlightedText(label="Entities", elem_id="entities", combine_adjacent=False,
                                         show_legend=False)
        detected = gr.Markdown(elem_id="detected-domain")
        status = gr.Markdown(elem_id="status")

        def extract(text: str, mode: str, domain: str, entity_types: str, request: gr.Request):
            return tagger(text, mode, domain, entity_types, request)

        button.click(extract, inputs=[text, mode, domain, types], outputs=[highlighted, detected, status],
                     api_name="extract", concurrency_limit=2)
        samples = examples()
        if samples and modes:
            default_mode = modes[0]
            rows = [[sentence, MODE_CLLMFS if source == "wnut17" and MODE_CLLMFS in modes else default_mode]
                    for sentence, source in samples]
            gr.Examples(rows, inputs=[text, mode], label="Examples (UNER English-EWT test genres, WNUT-17 test)")
        names = [shown_name(m) for m in config.multibert + ([config.cllmfs] if config.cllmfs else [])]
        gr.Markdown("Models: " + ", ".join(f"`{n}`" for n in names) if names
                    else "No model is configured (see the Space's README).")
    demo.queue(max_size=32, default_concurrency_limit=2)
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = SpaceConfig.from_env()
    demo = build_demo(Models(config), config)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), show_error=False, ssr_mode=False,
                theme=gr.themes.Default(**THEME_FONTS))


if __name__ == "__main__":
    main()
