"""Train and sample a class-conditional Fashion-MNIST GAN from the dashboard alone, as a person
would: paste the key, fill in the New job form, watch the job page until it finishes, then
generate from its model in the playground. Prints the figures; screenshots go to --out.

    python benchmarks/browser_fashion_mnist.py --url http://127.0.0.1:8000 \\
        --key-file ganforge-data/api-key --steps 300

Needs a running ``ganforge up`` (GANFORGE_DATA_DIR holding fashion-mnist/) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/fashion-mnist"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{args.url}/")
        page.fill("input[name=key]", args.key_file.read_text().strip())
        page.click("form.key-form button[type=submit]")
        page.click("nav a:text('New job')")
        page.wait_for_selector("form.spec-form")
        page.select_option("select[name=dataset]", "builtin:fashion-mnist")
        page.select_option("select[name=preset]", "cgan")
        page.fill("input[name=name]", "fashion-mnist from the browser")
        page.fill("input[name=tags]", "proof")
        page.select_option("select[name='training.device']", "cpu")
        page.fill("input[name='training.steps']", str(args.steps))
        page.fill("input[name='monitor.sample_every']", str(max(1, args.steps // 6)))
        page.fill("input[name='monitor.eval_every']", str(args.steps))
        page.fill("input[name='monitor.checkpoint_every']", str(args.steps))
        page.check("input[name=metric][value=class_accuracy]")
        started = time.monotonic()
        page.click("form.spec-form button[type=submit]")
        page.wait_for_url("**/#/jobs/job_*")
        job_id = page.url.rsplit("/", 1)[-1]
        page.wait_for_timeout(20_000)
        page.screenshot(path=str(args.out / "job-running.png"), full_page=True)
        page.wait_for_selector("[data-status=succeeded]", timeout=3_600_000)
        seconds = time.monotonic() - started
        page.wait_for_selector(f"canvas.grid[data-loaded$='/samples/{args.steps}.png']")
        page.wait_for_timeout(2500)
        page.screenshot(path=str(args.out / "job.png"), full_page=True)
        summary = page.inner_text("p.summary")
        page.click("a:text('Open its model')")
        page.wait_for_selector("form.playground")
        page.fill("form.playground input[name=n]", "8")
        page.click("form.playground button[type=submit]")
        page.wait_for_selector("canvas.grid[data-loaded$='/samples']")
        page.screenshot(path=str(args.out / "model.png"), full_page=True)
        browser.close()
    print(json.dumps({"job": job_id, "steps": args.steps, "seconds": round(seconds, 1),
                      "summary": summary, "screenshots": str(args.out)}))  # fmt: skip


if __name__ == "__main__":
    main()
