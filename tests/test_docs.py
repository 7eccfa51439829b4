"""The README and docs/ against the code: links resolve, commands name options that exist,
the README stays short, and bench/quick.py's command line (without running the benchmarks)."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A command in a code block or inline: `python script.py ...` or `.venv/bin/python script.py ...`.
COMMAND = re.compile(r"(?:^|[\s`(])(?:\.venv/bin/)?python (?:-m )?([\w/]+)(?:\.py)?((?: [^`\n|]*)?)")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path):
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def code_lines(path):
    """Lines of fenced or indented code blocks, and inline code spans, with continuations joined."""
    text = path.read_text().replace("\\\n", " ")
    lines, fenced = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            lines.append(line)
        else:
            lines += re.findall(r"`([^`]+)`", line)
    return lines


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    problems = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue                                  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"link to {target}: {file.relative_to(ROOT)} does not exist")
        elif anchor and file.suffix == ".md" and anchor not in headings(file):
            problems.append(f"link to {target}: no such heading in {file.name}")
    assert not problems, f"{page.name}:\n" + "\n".join(sorted(set(problems)))


def script_source(name):
    """The source that defines a script's command line: NAME.py (with training/settings.py,
    where train.py's options are declared), or a package NAME/."""
    path = ROOT / f"{name}.py"
    if path.exists():
        parts = (path, ROOT / "training" / "settings.py") if name == "train" else (path,)
        return "\n".join(p.read_text() for p in parts)
    folder = ROOT / name
    if folder.is_dir():
        return "\n".join(p.read_text() for p in sorted(folder.glob("*.py")))
    return None


def option_defined(option, source):
    """An --option is defined when the source names it, or (training/settings.py builds train.py's
    options from the keys of its settings) when its underscore form is a settings key."""
    key = option[2:].replace("-", "_")
    return (f'"{option}"' in source or f"'{option}'" in source
            or re.search(rf"(^|[\s{{,(]){key}\s*=|[\"']{key}[\"']\s*:", source, re.M) is not None)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_name_scripts_and_options_that_exist(page):
    problems = []
    for line in code_lines(page):
        for script, rest in COMMAND.findall(line):
            if script in ("-c",) or script.startswith("-"):
                continue
            source = script_source(script)
            if source is None:
                problems.append(f"python {script}: no {script}.py")
                continue
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
                if option != "--help" and not option_defined(option, source):
                    problems.append(f"python {script} ... {option}: not an option of {script}")
    assert not problems, f"{page.name}:\n" + "\n".join(sorted(set(problems)))


def test_readme_fits_in_250_lines():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 250, f"README.md has {n} lines"


def test_the_demo_picture_is_committed_beside_its_generator():
    assert (ROOT / "docs" / "demo.png").stat().st_size > 10_000
    assert "docs/demo_figure.py" in (ROOT / "README.md").read_text()


def test_bench_quick_lists_its_commands_and_refuses_an_unknown_step():
    quick = [sys.executable, str(ROOT / "bench" / "quick.py")]
    done = subprocess.run(quick + ["--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("bench/load_speed.py", "bench/inference_speed.py", "bench/predict_speed.py",
                    "export.py --model models/v6_resnet_integral/model.keras --format onnx",
                    "--quantize int8"):
        assert command in done.stdout
    bad = subprocess.run(quick + ["--only", "load,warp"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --only: got 'load,warp'")
