"""The command after `attach --`, read as Python reads it: interpreter options with values, `env` wrappers,
`python -m` modules hashed by their file, and what is refused before anything runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchbench.errors import BenchbenchError
from benchbench.runner.attach.command import parse_command
from benchbench.runner.attach.launch import AttachOptions
from benchbench.runner.attach.record import attached_cell_id


@pytest.fixture
def script(tmp_path: Path) -> Path:
    p = tmp_path / "train.py"
    p.write_text("print('hi')\n")
    return p


@pytest.mark.parametrize("opts", [["-W", "ignore"], ["-X", "faulthandler"], ["-u", "-W", "error", "-X", "dev"],
                                  ["-Wignore"], ["-O"]])
def test_interpreter_options_with_values_are_not_the_script(script: Path, opts: list[str]) -> None:
    s = parse_command([sys.executable, *opts, str(script), "--lr", "0.1"])
    assert s.script == script.resolve() and s.name == "train.py"


def test_an_env_wrapper_runs_the_script_after_it(script: Path) -> None:
    s = parse_command(["env", "OMP_NUM_THREADS=1", "nnUNet_n_proc_DA=4", sys.executable, str(script)])
    assert s.script == script.resolve() and s.name == "train.py" and s.command[0] == "env"


def test_a_module_is_hashed_by_its_file_so_an_edit_is_a_new_cell(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("raise SystemExit('never imported')\n")
    mod = tmp_path / "proj" / "train.py"
    mod.write_text("lr = 0.1\n")
    s = parse_command([sys.executable, "-m", "proj.train"])
    assert s.script == mod and s.name == "proj.train"
    before = attached_cell_id(s, AttachOptions())
    mod.write_text("lr = 0.01\n")
    assert attached_cell_id(parse_command([sys.executable, "-m", "proj.train"]), AttachOptions()) != before
    (tmp_path / "proj" / "__main__.py").write_text("pass\n")
    assert parse_command([sys.executable, "-m", "proj"]).script == tmp_path / "proj" / "__main__.py"


def test_code_given_with_c_names_a_folder_without_spaces() -> None:
    assert parse_command([sys.executable, "-c", "print(1)"]).name == "python-c"


def test_several_ranks_are_refused_before_anything_runs(script: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(BenchbenchError, match="WORLD_SIZE=2"):
        parse_command([sys.executable, str(script)])


@pytest.mark.parametrize("opt", [["--cell", "abc"], ["--filter", "amp=bf16"], ["--device", "cpu"],
                                 ["--resume", "latest"]])
def test_advise_attach_refuses_a_suites_options(cli, script: Path, opt: list[str]) -> None:
    code, _, err = cli("advise", "--attach", *opt, "--", sys.executable, str(script))
    assert code == 2 and opt[0] in err and "not --attach's" in err, err


def test_advise_attach_checks_its_budget(cli, script: Path) -> None:
    code, _, err = cli("advise", "--attach", "--budget-min", "0", "--", sys.executable, str(script))
    assert code == 2 and "--budget-min must be positive" in err
