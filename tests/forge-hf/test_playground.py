"""The playground page (``GET /``): built per server kind, open without the API key, and driven in a real headless
browser (Selenium + the Debian ``chromium``/``chromium-driver`` packages) against real ``forge serve`` processes."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
from forge.serving.playground import page_for_routes, playground_html
from support import Server


def test_page_per_kind_and_config_escaped():
    html = playground_html("classify", "a </script> title")
    assert "</script> title" not in html and "<\\/script> title" in html
    config = html.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(config) == {"page": "classify", "title": "a </script> title", "model": None}
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html  # no CDN
    assert page_for_routes(["/health", "/v1/models", "/v1/chat/completions"]) == "chat"
    assert page_for_routes(["/forecast/batch", "/forecast"]) == "forecast"
    assert page_for_routes(["/health"]) is None
    with pytest.raises(ValueError, match="unknown playground page"):
        playground_html("nope", "t")


def test_base_app_serves_the_page_open_and_only_when_it_fits():
    from fastapi.testclient import TestClient
    from forge.serving.app import create_base_app
    from forge.serving.settings import ServeSettings

    bare = create_base_app("bare", ServeSettings(api_key="k"))
    with TestClient(bare) as client:
        assert client.get("/").status_code == 404
    inferred = create_base_app("inferred", ServeSettings(api_key="k"))
    inferred.post("/predict")(lambda: {})
    with TestClient(inferred) as client:
        page = client.get("/")  # no key: the page is open, the API behind it is not
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '"page": "classify"' in page.text
        assert client.post("/predict").status_code == 401
    declared = create_base_app("declared", ServeSettings(), page="forecast")
    with TestClient(declared) as client:
        assert '"page": "forecast"' in client.get("/").text


# ---- in a browser -------------------------------------------------------------------------------------------------

def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; it is in requirements-dev.txt)"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver; `make browser`)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def text_of(driver, element_id):
    return driver.find_element("id", element_id).text


@pytest.fixture(scope="module")
def classifier_artifact(tmp_path_factory, tiny_bert) -> Path:
    from tiny_models import make_tiny_classifier_artifact

    return make_tiny_classifier_artifact(tmp_path_factory.mktemp("playground") / "clf", tiny_bert)


def test_classifier_page_in_a_browser(browser, forge_cli, classifier_artifact, tmp_path):
    with Server(forge_cli, classifier_artifact, "--api-key", "s3cret") as server:
        expected = httpx.post(f"{server.url}/predict", json={"text": "a great film"},
                              headers={"Authorization": "Bearer s3cret"}).json()
        browser.get(server.url + "/")
        assert "forge sequence-classifier (negative, positive)" in browser.title
        browser.find_element("id", "classify-input").send_keys("a great film")
        browser.find_element("id", "classify-send").click()  # no key yet: the server refuses
        wait_for(browser, lambda d: "401" in text_of(d, "error"))
        assert "missing or wrong API key" in text_of(browser, "error")
        browser.find_element("id", "api-key").send_keys("s3cret")
        browser.find_element("id", "classify-send").click()
        wait_for(browser, lambda d: len(d.find_elements("css selector", "#bars .bar")) == 2)
        assert text_of(browser, "error") == ""
        verdict = text_of(browser, "verdict")
        assert verdict == f"{expected['label']} ({100 * expected['confidence']:.1f}%)"
        best = browser.find_element("css selector", "#bars .bar.best")
        assert best.get_attribute("data-label") == expected["label"]
        width = browser.execute_script("return document.querySelector('#bars .bar.best .fill').style.width")
        assert width == f"{100 * expected['confidence']:.1f}%"
        browser.save_screenshot(str(tmp_path / "playground-classifier.png"))
    assert (tmp_path / "playground-classifier.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def lm_artifact(tmp_path_factory, tiny_lm) -> Path:
    path = tmp_path_factory.mktemp("playground-lm") / "lm"
    shutil.copytree(tiny_lm, path)
    (path / "forge.json").write_text(json.dumps({"schema": 1, "kind": "causal-lm", "base_model": "tiny-llama"}))
    return path


def test_chat_page_streams_in_a_browser(browser, forge_cli, lm_artifact, tmp_path):
    with Server(forge_cli, lm_artifact) as server:
        question = "what is the capital of france?"
        expected = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": question}], "max_tokens": 12, "temperature": 0,
        }).json()["choices"][0]["message"]["content"]
        browser.get(server.url + "/")
        maximum = browser.find_element("id", "chat-max")
        maximum.clear()
        maximum.send_keys("12")
        browser.find_element("id", "chat-input").send_keys(question + "\n")  # Enter sends
        wait_for(browser, lambda d: d.find_elements("css selector", "#log .msg.assistant[data-done]"))
        assert text_of(browser, "error") == ""
        shown = browser.execute_script("return document.querySelector('#log .msg.assistant').textContent")
        assert shown == expected  # the streamed pieces add up to the non-streamed answer
        assert [e.text for e in browser.find_elements("css selector", "#log .msg.user")] == [question]
        browser.save_screenshot(str(tmp_path / "playground-chat.png"))
        browser.find_element("id", "chat-reset").click()
        assert browser.find_elements("css selector", "#log .msg") == []


SERIES = "date,value\n" + "".join(f"{2000 + i // 12}-{i % 12 + 1:02d}-01,{100 + i + 10 * (i % 12 > 5)}\n"
                                  for i in range(60))


def test_forecast_page_draws_the_series_in_a_browser(browser, forge_cli, tmp_path):
    (forge_cli.cwd / "s.csv").write_text(SERIES)
    forge_cli("run", "--recipe", "stat-forecast", "--data", "s.csv", "--set", "horizon=6", "--no-tracking", "-o",
              "stat", check=True)
    with Server(forge_cli, forge_cli.cwd / "stat") as server:
        browser.get(server.url + "/")
        history = "".join(f"{2003 + i // 12}-{i % 12 + 1:02d}-01,{150 + i}\n" for i in range(24))
        browser.find_element("id", "fc-history").send_keys(history)
        browser.find_element("id", "fc-horizon").send_keys("4")
        browser.find_element("id", "fc-send").click()
        wait_for(browser, lambda d: d.find_elements("css selector", "#chart svg polyline.forecast")
                 or text_of(d, "error"))
        assert text_of(browser, "error") == ""
        assert len(browser.find_elements("css selector", "#chart svg circle.point")) == 4
        assert browser.find_elements("css selector", "#chart svg polyline.history")
        assert browser.find_elements("css selector", "#chart svg polygon.interval")  # the widest interval band
        rows = browser.find_elements("css selector", "#fc-table tr")
        assert len(rows) == 1 + 4 and rows[1].text.startswith("2005-01-01")
        browser.save_screenshot(str(tmp_path / "playground-forecast.png"))
        # a bad history line is named in the page, nothing is sent
        browser.find_element("id", "fc-history").send_keys("oops\n")
        browser.find_element("id", "fc-send").click()
        wait_for(browser, lambda d: "history line 25" in text_of(d, "error"))


def test_chat_page_stop_button_ends_a_long_reply(browser, forge_cli, lm_artifact, tmp_path):
    endless = tmp_path / "endless"  # EOS never comes: only Stop ends the reply before 4096 tokens
    shutil.copytree(lm_artifact, endless)
    config = json.loads((endless / "generation_config.json").read_text())
    (endless / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": 100_000}))
    with Server(forge_cli, endless) as server:
        browser.get(server.url + "/")
        maximum = browser.find_element("id", "chat-max")
        maximum.clear()
        maximum.send_keys("4096")  # the server's most: ~10 s of tokens here
        browser.find_element("id", "chat-input").send_keys("tell me everything\n")
        wait_for(browser, lambda d: len(d.execute_script(
            "return document.querySelector('#log .msg.assistant').textContent")) > 20)  # streaming has begun
        assert browser.find_element("id", "chat-send").get_attribute("disabled")
        browser.find_element("id", "chat-stop").click()
        wait_for(browser, lambda d: d.find_elements("css selector", "#log .msg.assistant[data-done]"), timeout=10)
        assert text_of(browser, "error") == ""
        assert not browser.find_element("id", "chat-send").get_attribute("disabled")
        shown = browser.execute_script("return document.querySelector('#log .msg.assistant').textContent")
        time.sleep(0.5)  # nothing more arrives after Stop
        assert browser.execute_script("return document.querySelector('#log .msg.assistant').textContent") == shown
