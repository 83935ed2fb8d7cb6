"""The dashboard and the API docs in a real browser, against ``ganforge up``, with every request
off this machine blocked: paste the key, train a tiny job from the form, watch it finish, sample
its model; upload a dataset by drag and drop; read the docs offline."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np

from tests.fixtures.embedded import Up
from tests.web.conftest import Page

TIMEOUT_MS = 90_000
# CSP refusals that are expected: plotly.js's own style injection (see RECORD_CSP_VIOLATIONS)
STYLE_DIRECTIVES = {"style-src-elem", "style-src-attr"}


def enter_key(page: Page, service: Up) -> None:
    page.page.goto(f"{page.url}/")
    page.page.fill("input[name=key]", service.key())
    page.page.click("form.key-form button[type=submit]")
    page.page.wait_for_selector("h1:text('Jobs')")


def assert_stayed_local(page: Page) -> None:
    assert page.blocked == [], f"requests off this machine were attempted: {page.blocked}"
    assert page.errors == [], page.errors
    refused = [v for v in page.csp_violations() if v["directive"] not in STYLE_DIRECTIVES]
    assert refused == [], refused


def test_train_from_the_form_then_sample_its_model(page: Page, service: Up) -> None:
    enter_key(page, service)
    page.screenshot("jobs-empty")
    browser = page.page
    browser.click("nav a:text('New job')")
    browser.wait_for_selector("form.spec-form")
    browser.select_option("select[name=dataset]", "builtin:digits")
    browser.fill("input[name='training.steps']", "0")
    browser.click("form.spec-form button[type=submit]")
    browser.wait_for_selector("[data-field='training.steps'].invalid")  # the 422's param
    page.screenshot("new-job-invalid")

    browser.fill("input[name=name]", "browser digits")
    browser.fill("input[name=tags]", "browser, tiny")
    browser.select_option("select[name='model.conditioning']", "concat")
    browser.fill("input[name='training.steps']", "40")
    browser.fill("input[name='training.batch_size']", "16")
    browser.fill("input[name='model.width']", "8")
    browser.fill("input[name='model.latent_dim']", "16")
    browser.fill("input[name='monitor.sample_every']", "20")
    browser.fill("input[name='monitor.eval_every']", "40")
    browser.fill("input[name='monitor.checkpoint_every']", "40")
    browser.click("form.spec-form button[type=submit]")
    browser.wait_for_url("**/#/jobs/job_*")

    progress = browser.locator(".progress-line progress")
    browser.wait_for_selector("[data-status=succeeded]", timeout=TIMEOUT_MS)
    assert progress.get_attribute("value") == progress.get_attribute("max") == "40"
    browser.wait_for_selector("canvas.grid[data-loaded$='/samples/40.png']", timeout=TIMEOUT_MS)
    browser.wait_for_selector(".chart .main-svg", timeout=TIMEOUT_MS)  # plotly drew the curves
    assert browser.locator("h1").first.inner_text() == "browser digits"
    assert browser.locator(".events .event").count() >= 3
    page.screenshot("job")

    browser.click("a:text('Open its model')")
    browser.wait_for_selector("form.playground")
    browser.fill("form.playground input[name=n]", "4")
    browser.fill("form.playground input[name=truncation]", "1.5")
    browser.click("form.playground button[type=submit]")
    browser.wait_for_selector("canvas.grid[data-loaded$='/samples']")
    width = browser.eval_on_selector("canvas.grid", "canvas => canvas.width")
    assert width > 110  # the class labels' column and the images
    browser.select_option("form.walk select[name=from_class]", "3")
    browser.select_option("form.walk select[name=to_class]", "8")
    browser.click("form.walk button[type=submit]")
    browser.wait_for_selector("canvas.strip[data-loaded$='/interpolations']")
    strip = browser.eval_on_selector("canvas.strip", "c => [c.width, c.height]")
    assert strip[0] > 4 * strip[1]  # 8 frames in one row
    page.screenshot("model")

    browser.click("nav a:text('Jobs')")
    browser.wait_for_selector("tr[data-job] .status.succeeded")
    assert "browser digits" in browser.inner_text("table.jobs")
    page.screenshot("jobs")
    assert_stayed_local(page)


def npz_bytes() -> bytes:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    images = (rng.random((12, 12, 12)) * 60 + labels[:, None, None] * 90).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels, class_names=np.array(["dark", "mid", "light"]))
    return buffer.getvalue()


DROP_FILE = """([name, base64]) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name));
  const zone = document.querySelector("[data-testid=dropzone]");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
}"""


def test_datasets_page_uploads_by_drag_and_drop(page: Page, service: Up) -> None:
    enter_key(page, service)
    browser = page.page
    browser.click("nav a:text('Datasets')")
    browser.wait_for_selector("[data-dataset=digits] canvas[data-loaded]")
    payload: list[Any] = ["shades.npz", base64.b64encode(npz_bytes()).decode()]
    browser.evaluate(DROP_FILE, payload)
    card = browser.locator("[data-dataset=shades]")
    card.locator("canvas[data-loaded]").wait_for()
    assert card.locator(".classes").inner_text().split() == ["dark", "4", "mid", "4", "light", "4"]
    assert "12 images" in card.inner_text()
    dataset_id = card.inner_text().split("ds_", 1)[1].split()[0]
    tagged = httpx.patch(f"{service.url}/v1/datasets/ds_{dataset_id}", json={"tags": ["scans"]},
                         headers={"Authorization": f"Bearer {service.key()}"})  # fmt: skip
    assert tagged.status_code == 200, tagged.text
    browser.reload()
    browser.locator("[data-dataset=shades] .tag:text('scans')").wait_for()
    page.screenshot("datasets")
    assert_stayed_local(page)


def test_docs_render_offline(page: Page, service: Up) -> None:
    browser = page.page
    browser.goto(f"{page.url}/docs")
    browser.wait_for_selector(".opblock-summary-path[data-path='/v1/presets']")
    assert browser.locator(".opblock").count() > 20
    page.screenshot("docs-swagger", full_page=False)
    browser.goto(f"{page.url}/redoc")
    browser.get_by_text("List the presets").first.wait_for(state="attached")
    assert browser.locator("[data-section-id^='tag/']").count() >= 5
    page.screenshot("docs-redoc", full_page=False)
    assert page.blocked == [], f"requests off this machine were attempted: {page.blocked}"
