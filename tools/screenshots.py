"""Make the README's pictures from a real results folder: the dashboard's entanglement page in
headless Chromium, and the first figure page of the PDF report (rendered with pdftoppm).

    python -m tools.screenshots RESULTS_DIR --out docs        # from the repository root
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.browser import Chromium


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(results: Path, port: int) -> subprocess.Popen:
    """``lab dashboard`` in its own process group (so stopping it stops Streamlit too)."""
    return subprocess.Popen([sys.executable, "-m", "lab.cli", "dashboard", str(results), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop ``lab dashboard`` and Streamlit with it (its whole process group); SIGKILL after ``timeout`` s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def dashboard_png(results: Path, out: Path, page: str = "entanglement", wait_text: str = "Profile across cuts") -> Path:
    """Screenshot of one dashboard page once its charts have loaded."""
    port = free_port()
    server = serve(results, port)
    try:
        with Chromium(width=1440, height=1250) as browser:
            deadline = time.monotonic() + 60
            while True:  # the server needs a moment before it accepts connections
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            browser.open(f"http://127.0.0.1:{port}/{page}")
            browser.wait_for(f"document.body.innerText.includes({wait_text!r})", timeout=90)
            browser.wait_for("Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
                             ".filter(i => i.complete && i.naturalWidth > 0).length >= 1", timeout=90)
            time.sleep(1.5)  # let the last fonts and images settle
            return browser.screenshot(out)
    finally:
        stop(server)


def section_page(pdf: Path, title: str) -> int:
    """The first page of the PDF whose text starts with ``title`` (pdftotext from poppler-utils)."""
    page = 1
    while True:
        done = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{pdf}: no page starts with {title!r}")
        if done.stdout.lstrip().startswith(title):
            return page
        page += 1


def report_png(results: Path, out: Path, page: int | None = None, section: str = "Internal entanglement") -> Path:
    """A page of the PDF report as PNG (pdftoppm from poppler-utils): ``page``, or the first page of ``section``."""
    from lab.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        (pdf,) = write_report(results, tmp, ["pdf"])
        page = page or section_page(pdf, section)
        stem = Path(tmp) / "page"
        subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", str(page), "-l", str(page), "-singlefile", str(pdf), str(stem)],
                       check=True)
        out.write_bytes(stem.with_suffix(".png").read_bytes())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results folder written by lab analyze / lab demo")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for dashboard.png and report.png")
    parser.add_argument("--report-page", type=int, default=None,
                        help="which PDF page to render (default: the first page of the entanglement section)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(dashboard_png(args.results.resolve(), args.out / "dashboard.png"))
    print(report_png(args.results.resolve(), args.out / "report.png", args.report_page))


if __name__ == "__main__":
    main()
