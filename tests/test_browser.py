"""A lesson as a reader meets it: an executed 04_infer opened in JupyterLab, in headless Chromium.

JupyterLab runs bound to 127.0.0.1 on a free port with a token, its config, runtime and user
settings in the test's temporary folder, plus the project's own ``jupyter-config/`` (which
switches the "official Jupyter news" prompt off). Chromium is Debian's ``chromium`` package,
driven by Playwright through ``executable_path``: nothing downloads a browser. The screenshot
is saved as ``<tmp_path>/04_infer.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import papermill
import pytest

from moderation_helpers.recipe import job_record
from moderation_helpers.recipe.run_folder import PREPARE_SUMMARY, SPLIT_FILES
from tests.chromium import find_chromium

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "04_infer.ipynb"
PROJECT_JUPYTER_CONFIG = REPO / "jupyter-config"
NEWS_PROMPT = "official Jupyter news"

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def executed_notebook(prepared_run_dir, trained_job, factory, tmp_path) -> Path:
    """04_infer executed with papermill on the small trained job, in a folder of its own."""
    _, job = trained_job
    run = tmp_path / "lessons"
    run.mkdir()
    for name in (*SPLIT_FILES.values(), PREPARE_SUMMARY):
        shutil.copy(prepared_run_dir / name, run / name)
    job_record.save_job_record(
        run, job_record.job_record(job, backend="local", server_url=factory.url)
    )
    output = run / NOTEBOOK.name
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(output),
        parameters={"run_dir": str(run), "batch_size": 32, "max_samples": 60},
        progress_bar=False,
        cwd=str(REPO),
    )
    return output


@pytest.fixture
def jupyterlab(executed_notebook, tmp_path):
    """JupyterLab serving the notebook's folder; yields ``(base_url, token)`` and stops it."""
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter"
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Every cell in the DOM, so that every figure is an <img> the test can see.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_CONFIG_PATH": str(PROJECT_JUPYTER_CONFIG),
        "JUPYTER_TOKEN": token,  # never on the command line, where `ps` would show it
    }
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={executed_notebook.parent}",
        *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
    ]
    log = (home / "lab.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not start: {(home / 'lab.log').read_text()}"
                    ) from None
                time.sleep(0.5)
        yield base, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Session-scoped and first, so that without a browser the test skips before training."""
    return find_chromium()


def test_the_executed_lesson_renders_in_a_real_browser(
    chromium, executed_notebook, jupyterlab, tmp_path
):
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    nb = nbformat.read(executed_notebook, as_version=4)
    n_images = sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        for output in cell.get("outputs", [])
    )
    assert n_images >= 3, "04_infer shows its PR, ROC and bar figures"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{executed_notebook.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            images = page.locator(".jp-Notebook .jp-OutputArea-output img")
            images.nth(n_images - 1).wait_for(timeout=60_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img')]"
                ".every(img => img.complete && img.naturalWidth > 0)",
                timeout=60_000,
            )
            assert images.count() == n_images
            # Outputs are tagged with their MIME type: printed text is there, errors are not.
            assert page.locator('[data-mime-type="application/vnd.jupyter.stdout"]').count() > 0
            errors = page.locator('[data-mime-type="application/vnd.jupyter.error"]')
            assert errors.count() == 0, errors.all_inner_texts()
            # The threshold explorer, opened untrusted, shows its static table.
            explorer = page.locator(".jp-OutputArea-output table", has_text="flagged")
            assert explorer.count() >= 1
            assert page.get_by_text("Error displaying widget").count() == 0
            page.wait_for_timeout(3000)  # the news prompt, when on, shows shortly after start
            assert page.get_by_text(NEWS_PROMPT).count() == 0, "the news prompt is shown"
            images.nth(0).scroll_into_view_if_needed()
            explorer.first.scroll_into_view_if_needed()
            shot = tmp_path / "04_infer.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.read_bytes()[:4] == b"\x89PNG"
