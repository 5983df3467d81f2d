"""Opt-in mutation testing with mutmut: would the tests notice a small, plausible bug?

    .venv/bin/python tools/mutation.py              # the reliability subset, ~30 min on 2 cores
    .venv/bin/python tools/mutation.py --core       # every module of core/ (hours)
    .venv/bin/python tools/mutation.py --score      # the score of the last run, no run
    .venv/bin/python tools/mutation.py --show       # ... and each surviving mutant's diff

The subset is ``[tool.mutmut]`` in pyproject.toml: the modules behind the
guarantees of RELIABILITY.md against the fast tests that claim them. ``--core``
mutates all of ``blender_img3d/core`` against ``tests/core`` and
``tests/reliability``. mutmut runs, niced, in a copy of the tracked files
(``--workdir``, kept between runs), so the worktree stays clean, edits made
meanwhile don't leak into the run, and a rerun retests only mutants whose
function changed or that new tests cover; ``--rerun-survivors`` retests the
last run's survivors (and unchecked mutants) against today's tests. The score
printed (and written to ``mutants/score.json`` there) is killed / all mutants,
per module and in total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path(os.environ.get("TMPDIR", "/tmp")) / "blender_img3d-mutation"
CORE_SELECTION = {
    "only_mutate": ["blender_img3d/core/*"],
    "pytest_add_cli_args_test_selection": ["tests/core", "tests/reliability"],
}


def copy_tree(workdir: Path) -> None:
    """The tracked files (and the untracked, unignored ones) into ``workdir``, changed ones only."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.split(b"\0")  # fmt: skip
    for raw in filter(None, listed):
        source, target = ROOT / os.fsdecode(raw), workdir / os.fsdecode(raw)
        if not source.is_file():
            continue
        if target.exists() and target.read_bytes() == source.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    venv = workdir / ".venv"
    if not venv.exists():
        venv.symlink_to((ROOT / ".venv").resolve())
    if not (workdir / ".git").exists():  # mutmut asks git what changed since its last run
        subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    subprocess.run(["git", "add", "-A"], cwd=workdir, check=True)
    subprocess.run(
        ["git", "-c", "user.name=mutation", "-c", "user.email=mutation@localhost", "commit",
         "-q", "--allow-empty", "-m", "tree under test"],
        cwd=workdir, check=True,
    )  # fmt: skip


def select_all_of_core(workdir: Path) -> None:
    """Rewrite the copy's ``[tool.mutmut]`` lists for ``--core``."""
    pyproject = workdir / "pyproject.toml"
    text = pyproject.read_text()
    for key, values in CORE_SELECTION.items():
        listed = "[" + ", ".join(json.dumps(v) for v in values) + "]"
        text, count = re.subn(rf"(?ms)^{key} = \[.*?\]", f"{key} = {listed}", text, count=1)
        if not count:
            raise SystemExit(f"pyproject.toml's [tool.mutmut] has no {key} to replace")
    pyproject.write_text(text)


def statuses(workdir: Path) -> dict[str, str]:
    """Each mutant's status after the last run, read from mutmut's own records."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for meta in sorted((workdir / "mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            found[name] = status_by_exit_code[code]
    return found


def report(workdir: Path, show: bool) -> dict:
    found = statuses(workdir)
    if not found:
        raise SystemExit(f"no mutation results in {workdir / 'mutants'}: run without --score first")
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in found.items():
        by_module[re.split(r"\.x[_\u01c1]", name, maxsplit=1)[0]][status] += 1  # x_f, xǁClassǁf
    total = Counter(found.values())
    rows = {module: dict(counts) for module, counts in sorted(by_module.items())}
    for module, counts in rows.items():
        score = 100 * counts.get("killed", 0) / sum(counts.values())
        print(f"{module:<48} {sum(counts.values()):>5} mutants  {score:5.1f} %  {counts}")
    score = 100 * total.get("killed", 0) / sum(total.values())
    print(f"{'total':<48} {sum(total.values()):>5} mutants  {score:5.1f} %  {dict(total)}")
    summary = {"score_percent": round(score, 1), "total": dict(total), "modules": rows}
    (workdir / "mutants" / "score.json").write_text(json.dumps(summary, indent=2) + "\n")
    if show:
        for name in sorted(n for n, status in found.items() if status == "survived"):
            subprocess.run([str(workdir / ".venv/bin/mutmut"), "show", name], cwd=workdir)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", action="store_true", help="mutate all of core/, not the subset")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--rerun-survivors", action="store_true")
    parser.add_argument("--score", action="store_true", help="report the last run; don't run")
    parser.add_argument("--show", action="store_true", help="print every survivor's diff")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if not args.score:
        workdir.mkdir(parents=True, exist_ok=True)
        copy_tree(workdir)
        if args.core:
            select_all_of_core(workdir)
        command = ["nice", str(workdir / ".venv/bin/mutmut"), "run"]
        command += ["--max-children", str(args.max_children)]
        if args.rerun_survivors:  # and the mutants of functions changed since: not yet checked
            rerun = ("survived", "not checked")
            command += sorted(n for n, s in statuses(workdir).items() if s in rerun)
        subprocess.run(command, cwd=workdir, check=False)
    report(workdir, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
