"""The Gradio Space (``spaces/app.py``), serving the models the push recipe published to the local Hub:
started with no outside network call, answering through ``gradio_client`` and in a real headless Chromium
(installed by `make browser`), with clear messages, limits and no leaked paths or tokens."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from multibert_tiny import one_torch_thread
from ner_adapters.hub.push import PushResult, space_models

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SENTENCE = "mary visited paris today . john scored twice for arsenal in london ."
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def load_app():
    spec = importlib.util.spec_from_file_location("ner_adapters_space_app", REPO_ROOT / "spaces" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def outside_calls():
    """Every connection to a non-local host while this module runs is refused and recorded."""
    attempts: list = []
    originals = socket.socket.connect, socket.socket.connect_ex

    def guarded(original):
        def connect(sock, address):
            host = address[0] if isinstance(address, tuple) else str(address)
            if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in LOCAL_HOSTS:
                attempts.append(address)
                raise OSError(f"test guard: outside connection to {host} refused")
            return original(sock, address)
        return connect

    socket.socket.connect, socket.socket.connect_ex = guarded(originals[0]), guarded(originals[1])
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex = originals


@pytest.fixture(scope="module")
def space(published, outside_calls):
    """The Space as ``python spaces/app.py`` builds it, configured with the published repo ids."""
    with one_torch_thread():
        app = load_app()
        models = space_models(PushResult(**entry) for entry in published["report"])
        config = app.SpaceConfig(multibert=models["multibert"], cllmfs=models["cllmfs"], max_chars=300, rate_limit=1000)
        loaded = app.Models(config)
        assert loaded.problems == []
        demo = app.build_demo(loaded, config)
        port = _free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                    show_error=False, theme=app.gr.themes.Default(**app.THEME_FONTS))
        try:
            yield SimpleNamespace(app=app, models=loaded, config=config, demo=demo, url=f"http://127.0.0.1:{port}/")
        finally:
            demo.close()


def _segments(entities, text):
    return [(text[e["start"]:e["end"]], e["entity_group"]) for e in entities]


def test_space_starts_offline_and_answers_through_gradio_client(space, outside_calls):
    from gradio_client import Client

    app, models = space.app, space.models
    assert models.modes() == [app.MODE_AUTO, app.MODE_DOMAIN, app.MODE_CLLMFS]
    client = Client(space.url, verbose=False)
    highlighted, detected, status = client.predict(SENTENCE, app.MODE_AUTO, "email", "", api_name="/extract")
    expected = models.multibert(SENTENCE, return_domain=True)
    labelled = [(t["token"], t["class_or_confidence"]) for t in highlighted if t["class_or_confidence"]]
    assert labelled == _segments(expected["entities"], SENTENCE) and labelled
    assert "".join(t["token"] for t in highlighted) == SENTENCE
    assert detected == f"**Detected domain:** {expected['domain']} ({100 * expected['domain_score']:.0f}% confidence)"
    assert status == f"{len(expected['entities'])} entities found."

    _, detected, _ = client.predict(SENTENCE, app.MODE_DOMAIN, "reviews", "", api_name="/extract")
    assert detected == "**Domain adapter:** reviews"
    text = "Ali met Sara in Rome"
    highlighted, _, status = client.predict(text, app.MODE_CLLMFS, None, "person, location", api_name="/extract")
    expected = models.cllmfs(text, entity_types=["person", "location"])
    assert [(t["token"], t["class_or_confidence"]) for t in highlighted if t["class_or_confidence"]] == \
        _segments(expected, text)
    assert outside_calls == []  # neither start-up nor serving reached outside


class _Request:
    def __init__(self, host: str):
        self.client = SimpleNamespace(host=host)


def test_space_messages_limits_and_error_hygiene(space, monkeypatch):
    app = space.app
    tagger = app.Tagger(space.models, space.config)
    request = _Request("10.0.0.1")

    def message(*args):
        highlighted, detected, status = tagger(*args, request)
        assert highlighted["entities"] == [] and detected == ""
        return status

    assert message("   ", app.MODE_AUTO, None, "") == "⚠️ Please enter some text."
    assert message("x" * 301, app.MODE_AUTO, None, "") == \
        "⚠️ The text has 301 characters; the limit is 300. Please shorten it."
    assert "at least one entity type" in message("Ali met Sara", app.MODE_CLLMFS, None, " , ")
    assert "at most 10 entity types" in message("Ali met Sara", app.MODE_CLLMFS, None, ",".join("abcdefghijk"))
    assert "short names" in message("Ali met Sara", app.MODE_CLLMFS, None, "person; DROP TABLE <x>")
    assert "choose a domain adapter" in message("Ali met Sara", app.MODE_DOMAIN, "no-such-domain", "")
    assert "choose one of the available modes" in message("Ali met Sara", "something else", None, "")

    secret = os.environ["HF_TOKEN"]

    class Failing:  # a pipeline whose error message names a file and a token
        has_router, domains = True, ["email"]

        def __call__(self, *args, **kwargs):
            raise RuntimeError(f"cannot read /root/.cache/huggingface/secret/model.safetensors with token {secret}")

    monkeypatch.setattr(space.models, "multibert", Failing())
    failed = message("Ali met Sara", app.MODE_AUTO, None, "")
    assert failed == "⚠️ Sorry, tagging this text failed (RuntimeError). Please try another text."
    assert "/root" not in failed and secret not in failed

    limited = app.Tagger(space.models, app.SpaceConfig(max_chars=300, rate_limit=2))
    assert [limited("   ", app.MODE_AUTO, None, "", request)[2] for _ in range(2)] == ["⚠️ Please enter some text."] * 2
    assert limited("   ", app.MODE_AUTO, None, "", request)[2].startswith("⚠️ Too many requests: please wait")
    assert limited("   ", app.MODE_AUTO, None, "", _Request("10.0.0.2"))[2] == "⚠️ Please enter some text."


def test_space_config_from_environment_and_file(tmp_path, space):
    app = space.app
    saved = tmp_path / "space_config.json"
    saved.write_text(json.dumps({"multibert": ["me/x-router@abc"], "cllmfs": "me/x-cllmfs"}))
    config = app.SpaceConfig.from_env({}, saved)
    assert (config.multibert, config.cllmfs, config.max_chars, config.rate_limit) == \
        (["me/x-router@abc"], "me/x-cllmfs", 1000, 20)
    config = app.SpaceConfig.from_env({"NER_SPACE_MULTIBERT": "a/b, c/d", "NER_SPACE_MAX_CHARS": "50",
                                       "NER_SPACE_RATE_LIMIT": "3", "NER_SPACE_CORE": "me/core"}, saved)
    assert (config.multibert, config.core, config.max_chars, config.rate_limit, config.cllmfs) == \
        (["a/b", "c/d"], "me/core", 50, 3, "me/x-cllmfs")
    assert app.SpaceConfig.from_env({}, tmp_path / "missing.json").multibert == []
    assert app.shown_name(str(tmp_path)) == tmp_path.name and app.shown_name("me/x@abc") == "me/x"
    samples = app.examples()
    assert {source for _, source in samples} == {"uner", "wnut17"} and all(20 < len(s) < 250 for s, _ in samples)


# --- a real browser ---------------------------------------------------------------------------------------------


def _chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, which `make browser` (part of `make test`) installs."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("chromium/chromedriver are not installed: run `make browser` (apt-get as root) for this test")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400", "--no-first-run", "--disable-background-networking"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_space_in_a_headless_browser(space, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(space.url)
    wait = WebDriverWait(browser, 60)
    textarea = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#input-text textarea"))
    textarea.send_keys(SENTENCE)
    browser.find_element(By.CSS_SELECTOR, "#extract").click()  # the default mode: the domain classifier
    tokens = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#entities .token.highlighted"))
    expected = space.models.multibert(SENTENCE, return_domain=True)
    shown = [(t.find_element(By.CSS_SELECTOR, ".text").text, t.find_element(By.CSS_SELECTOR, ".label").text)
             for t in tokens]
    assert shown == _segments(expected["entities"], SENTENCE)
    wait.until(lambda d: "Detected domain" in d.find_element(By.CSS_SELECTOR, "#detected-domain").text)
    assert f"{expected['domain']} ({100 * expected['domain_score']:.0f}% confidence)" in \
        browser.find_element(By.CSS_SELECTOR, "#detected-domain").text
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "space_screenshot.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    print(f"\nSpace screenshot: {screenshot}")
