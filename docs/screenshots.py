"""Open the built site (site/, from `make docs`) in headless Chromium and take screenshots.

    python docs/screenshots.py [--out build/screenshots] [--chromium PATH]

Takes three pages: the home page, the Markov-chain guide (with its figures) and the API
reference at ``linest.fit``. Each is served from a local HTTP server (as a reader's browser
would load it, so the theme's scripts and relative links work) and rendered by
``chromium --headless --screenshot``. Then it checks what a reader would see: every
screenshot is a non-blank image of the requested size, and each page's HTML holds what it
must (the guide's figures, loaded without error by the server; the API entry of
``linest.fit`` with its parameters). Chromium comes from Debian's ``chromium`` package
(``apt-get install chromium``). Exit status 1 names the first check that failed.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"

#: (file name, page under site/, strings the page's HTML must contain, height in pixels)
PAGES = (
    ("home.png", "index.html", ("linest", "Two commands"), 1400),
    ("guide-ctmc.png", "guides/ctmc/index.html", ("cav-prevalence.png", "A first fit"), 4000),
    ("api-fit.png", "reference/api/index.html", ('id="linest.fit.fit"', "max_iterations"), 2200),
)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    failed: ClassVar[list[str]] = []

    def log_message(self, format, *args):  # the base class's signature
        if len(args) > 1 and str(args[1]).startswith(("4", "5")):
            self.failed.append(f"{args[0]} -> {args[1]}")


def _serve():
    handler = functools.partial(_Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _blank(path: Path) -> bool:
    """True if the PNG has a single colour (an empty render)."""
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return bool((image == image[0, 0]).all())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="build/screenshots", help="folder for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    if not (SITE / "index.html").exists():
        sys.exit("docs/screenshots.py: site/ is not built; run make docs first")
    if shutil.which(args.chromium) is None and not Path(args.chromium).exists():
        sys.exit("docs/screenshots.py: no chromium; install Debian's: apt-get install chromium")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = _serve()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems = []
    for name, page, needles, height in PAGES:
        html = (SITE / page).read_text()
        problems += [f"{page}: no {n!r} in the HTML" for n in needles if n not in html]
        target = out / name
        target.unlink(missing_ok=True)
        command = [
            args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--window-size=1280,{height}", "--virtual-time-budget=5000",
            f"--screenshot={target.resolve()}", base + page,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if not target.exists():
            problems.append(f"{page}: chromium wrote no screenshot ({done.stderr[-500:]})")
        elif _blank(target):
            problems.append(f"{page}: the screenshot is blank")
        else:
            print(f"docs/screenshots.py: {target} ({page})")
    server.shutdown()
    problems += [f"the server refused a request: {f}" for f in _Quiet.failed]
    for p in problems:
        print(f"docs/screenshots.py: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
