"""End to end: ``lab dashboard`` serves real runs and headless Chromium shows the run names and
rendered charts. Streamlit draws after the page loads, so the test waits for content through the
DevTools protocol (tools/browser.py, a developer tool kept out of the wheel).

Skipped only when /usr/bin/chromium is absent and CI is not set; under CI it must run.
"""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import lab_results
from tools.browser import CHROMIUM, Chromium
from tools.screenshots import free_port, stop

LOADED_IMAGES = ("Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
                 ".filter(i => i.complete && i.naturalWidth > 200).map(i => i.alt)")


@pytest.fixture(scope="module")
def chromium_present():
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    pytest.skip(f"headless Chromium ({CHROMIUM}, Debian package 'chromium') is not installed here; CI installs it")


def lab_command() -> list[str]:
    """The installed ``lab`` console script next to this Python (else the module)."""
    script = Path(sys.executable).with_name("lab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lab.cli"]


@contextmanager
def serving(results: Path, log: Path):
    """``lab dashboard RESULTS --port P`` in its own process group while the block runs; yields the URL."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([*lab_command(), "dashboard", str(results), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"lab dashboard exited with {proc.returncode}:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"lab dashboard did not listen on port {port} within 120 s:\n{log.read_text()}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc, timeout=20)  # the command became Streamlit (exec): stop its whole process group


@pytest.fixture(scope="module")
def served(lab_results_folder, chromium_present, tmp_path_factory):
    """The dashboard over the three-run results folder; yields the URL."""
    with serving(lab_results_folder.results, tmp_path_factory.mktemp("dashboard") / "server.log") as url:
        yield url


def test_dashboard_shows_runs_and_charts_in_chromium(served):
    with Chromium() as browser:
        browser.open(served + "/")
        browser.wait_for(f"document.body.innerText.includes({lab_results.LORA_RUN!r})", timeout=120)
        assert lab_results.MARKUP_RUN[:12] in browser.text()  # the markup run is listed as text ...
        assert browser.evaluate("document.querySelectorAll('img[onerror], img[src=\"x\"]').length") == 0  # ... never as an element
        alts = browser.wait_for(LOADED_IMAGES + ".length && " + LOADED_IMAGES, timeout=120)
        assert any("Update size" in alt for alt in alts)
        text = browser.text()  # the navigation: one page per family the schema declares
        assert "Internal entanglement" in text and "Rank spectra" in text and "LoRA norm thresholds" in text
        assert "What fine-tuning did" in text  # the landing page: the findings

        browser.open(served + "/entanglement")
        browser.wait_for("document.body.innerText.includes('Profile across cuts')", timeout=120)
        alts = browser.wait_for(f"({LOADED_IMAGES}).length >= 3 && {LOADED_IMAGES}", timeout=120)
        assert any(alt.startswith("Entanglement profile") for alt in alts)
        assert any(alt.startswith("Layer × cut") for alt in alts)


def test_pages_without_their_table_say_so_in_the_browser(lab_results_folder, chromium_present, tmp_path):
    with serving(lab_results_folder.partial, tmp_path / "server.log") as url, Chromium() as browser:
        browser.open(url + "/spectra")  # the partial run holds only the deltas table
        browser.wait_for("document.body.innerText.includes('not computed in this run')", timeout=120)
