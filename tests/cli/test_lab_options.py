"""EXPERIMENT given as a name in -o's lab or as its folder (patas.cli.lab_options), for every
command that reads a lab."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.running import ENV, patas

# Each command that takes EXPERIMENT, with it as "{}". Without a run in progress, those that
# need one say so: their message must name the same folder either way.
COMMANDS = [
    ("logs", "{}", "1"),
    ("logs", "{}", "1", "--stderr"),
    ("status", "{}", "--json"),
    ("stop", "{}"),
    ("attach", "{}"),
    ("nodes", "remove", "{}", "node0"),
    ("nodes", "add", "{}", "--node", "localhost", "1"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("experiment-folders")
    run = patas("explore", "--cmd", "echo {i}; echo err {i} >&2", "--va", "i", "0", "3", "1", "-o", "lab", "-j", "2", "-y", cwd=root)
    assert run.code == 0, run.stderr
    (root / "elsewhere").mkdir()
    return root


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_an_experiment_given_as_its_folder_is_the_experiment_by_name_in_its_lab(lab, command):
    by_name = patas(*[w.format("grid") for w in command], "-o", str(lab / "lab"), cwd=lab / "elsewhere")
    by_folder = patas(*[w.format(lab / "lab" / "grid") for w in command], cwd=lab / "elsewhere")
    assert (by_folder.code, by_folder.stdout, by_folder.stderr) == (by_name.code, by_name.stdout, by_name.stderr)
    assert "no such experiment" not in by_folder.stderr


@pytest.mark.parametrize("folder", ["lab/grid", "lab/grid/", "./lab/grid"])
def test_a_relative_folder_is_read_from_the_current_one(lab, folder):
    shown = patas("logs", folder, "2", cwd=lab)
    assert (shown.code, shown.stdout, shown.stderr) == (0, "2\n", "")
    agreeing = patas("logs", folder, "2", "-o", "lab", cwd=lab)  # -o may say the same lab
    assert (agreeing.code, agreeing.stdout) == (0, "2\n")


def test_a_folder_outside_the_lab_that_o_names_is_refused(lab):
    refused = patas("logs", "lab/grid", "0", "-o", "elsewhere", cwd=lab)
    assert refused.code == 2
    assert refused.stderr.splitlines()[-1] == "Error: EXPERIMENT lab/grid is not in -o elsewhere: give its name with -o, or its folder alone"


@pytest.mark.parametrize(
    ("given", "code", "message"),
    [
        ("/", 2, "Error: EXPERIMENT /: give an experiment's name (grid) or its folder (pataslab/grid)"),
        ("lab/..", 2, "Error: EXPERIMENT lab/..: give an experiment's name (grid) or its folder (pataslab/grid)"),
        ("lab/gird", 1, "Error: lab/gird: no such experiment (experiments there: grid; give one of them, or -o for another lab)"),
        ("nowhere/grid", 1, "Error: nowhere: no such pataslab folder (use -o to name the folder patas explore wrote into)"),
    ],
)
def test_a_folder_that_is_no_experiment_is_named_in_one_line(lab, given, code, message):
    refused = patas("logs", given, "0", cwd=lab)
    assert (refused.code, refused.stdout) == (code, "")
    assert refused.stderr.splitlines()[-1] == message


def test_bash_completes_experiment_with_the_lab_s_experiments(tmp_path):
    # Real bash, with the completion script click writes for patas (README, "Shell completion").
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "patas").write_text(f'#!/bin/sh\nexec {sys.executable} -m patas "$@"\n')
    (bin_dir / "patas").chmod(0o755)
    work = tmp_path / "work"
    for name in ("grid", "gpu-sweep"):  # what makes a folder an experiment: its definition
        (work / "lab" / name).mkdir(parents=True)
        (work / "lab" / name / "experiment.yaml").write_text(f"name: {name}\n")
    (work / "lab" / "not-an-experiment").mkdir()

    def completions(words: str) -> list[str]:
        script = (
            'eval "$(_PATAS_COMPLETE=bash_source patas)"\n'
            f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
            '_patas_completion patas; printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        env = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV['PATH']}"}
        done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert completions("patas logs -o lab ''") == ["gpu-sweep", "grid"]
    assert completions("patas status -o lab gp") == ["gpu-sweep"]
    assert completions("patas nodes remove -o lab g") == ["gpu-sweep", "grid"]
    assert completions("patas attach ''") == []  # no ./pataslab here


def test_a_lab_given_as_tilde_is_in_the_home_not_in_a_folder_named_tilde(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**ENV, "HOME": str(home)}
    for args in (["explore", "--cmd", "echo {i}", "--vl", "i", "1", "-o", "~/labs", "-y", "-q"], ["status", "-o", "~/labs", "--json"]):
        done = subprocess.run([sys.executable, "-m", "patas", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert (home / "labs/grid/0/stdout").read_text() == "1\n"
    assert not (tmp_path / "~").exists()
