"""The README and docs/ say what the code does: every `benchbench` command they show names a real command and
only options it has, the pytest plugin example runs, and the site builds with no broken link.

(The suite YAML examples run at tiny size in `test_axes.py`; the shipped suites there too.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def spans(text: str) -> list[str]:
    """Code blocks line by line, and inline code spans: where a command is shown."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        out += block.splitlines()
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    out += re.findall(r"`([^`\n]+)`", prose)
    return out


def shown_commands() -> list[tuple[str, list[str], list[str]]]:
    """(page, [command, subcommand], options named) for each `benchbench ...` shown."""
    from benchbench.cli.app import app  # noqa: F401  (commands register on import)

    found = []
    for page in PAGES:
        for span in spans(page.read_text()):
            for m in re.finditer(r"(?:^|[\s$(])benchbench ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)(.*)", span):
                words = m.group(1).split()
                rest = re.split(r"&&|;|\s\|\s|\s--(?:\s|$)", m.group(2))[0]  # after " -- ": the user's command
                found.append((page.name, words, re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)))
    return found


def click_app():
    import typer

    import benchbench.cli  # noqa: F401
    from benchbench.cli.app import app

    return typer.main.get_command(app)


def resolve(group, words: list[str]):
    cmd = group.commands.get(words[0])
    if cmd is not None and hasattr(cmd, "commands") and len(words) > 1:
        return cmd.commands.get(words[1])
    return cmd


def test_every_command_the_docs_show_exists_with_the_options_shown() -> None:
    group = click_app()
    shown = shown_commands()
    assert len(shown) > 40, len(shown)  # the pages show many: the extraction itself works
    bad = []
    for page, words, opts in shown:
        cmd = resolve(group, words)
        if cmd is None:
            bad.append(f"{page}: benchbench {' '.join(words)}: no such command")
            continue
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        bad += [f"{page}: benchbench {' '.join(words)} {o}: no such option" for o in opts if o not in known]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_wrong_option() -> None:
    group = click_app()
    cmd = resolve(group, ["history", "check"])
    assert cmd is not None and "--last" in {o for p in cmd.params for o in p.opts}
    assert resolve(group, ["runn"]) is None
    assert "--threshold" not in {o for p in resolve(group, ["list"]).params for o in p.opts}


@pytest.mark.slow
def test_the_pytest_plugin_example_runs(tmp_path: Path) -> None:
    """docs/gate.md's example, as a user would save it, on a tiny suite in place of the quickstart."""
    text = (ROOT / "docs" / "gate.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert 'suite_cells("suites/quickstart.yaml"' in example
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "quickstart.yaml").write_text(
        "name: tiny\narch: Unet\nencoder: resnet18\nresolution: 32\nbatch_size: 2\nclasses: 3\n"
        "data: synthetic\nwarmup: 1\nsteps: 2\n")
    (tmp_path / "test_speed.py").write_text(example)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_speed.py",
                          f"--benchmark-json={tmp_path / 'b.json'}"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert '"rounds": 2' in (tmp_path / "b.json").read_text()


@pytest.mark.skipif(shutil.which("mkdocs") is None, reason="mkdocs not installed (pip install -e '.[docs]')")
def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    out = subprocess.run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
