"""The web page (web/, docs/web.md) through its own tests: node's test runner on the JavaScript
pipeline against Python's answers, and a headless Chromium on the built page. Skipped when node,
web/node_modules (`make web` or `npm ci` in web/) or Chromium are missing, so a fresh clone's
suite stays green."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(not (WEB / "node_modules" / "onnxruntime-web").is_dir(),
                       reason="web/node_modules is missing: run `npm ci` in web/ (make web does)"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The page built into a temporary folder, and Python's answers next to it."""
    folder = tmp_path_factory.mktemp("web")
    for script, args in (("build.py", ["--out", str(folder / "build")]), ("fixtures.py", [str(folder / "fixtures")])):
        subprocess.run([sys.executable, str(WEB / script), *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return folder


def node_test(built, test_file):
    env = {**os.environ, "FKD_BUILD": str(built / "build"), "FKD_FIXTURES": str(built / "fixtures"),
           "FKD_ARTEFACTS": str(WEB / "build" / "artefacts"), "FKD_MEASURE_S": "2"}
    result = subprocess.run(["node", "--test", "--test-reporter=tap", f"test/{test_file}"], cwd=WEB, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# skipped 0" in result.stdout and "# fail 0" in result.stdout, result.stdout[-2000:]   # nothing skipped


def test_pipeline_equals_python(built):
    node_test(built, "parity.test.js")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (set CHROMIUM)")
def test_page_in_chromium(built):
    node_test(built, "browser.test.js")
