"""tools/mutation.py: the score it reports and the selection ``--core`` asks for (no mutmut run)."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "tools" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_score_is_killed_over_all_mutants_per_module(tmp_path, capsys):
    meta = tmp_path / "mutants" / "blender_img3d" / "core" / "outputs.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {
        "blender_img3d.core.outputs.x_plan_outputs__mutmut_1": 1,  # killed
        "blender_img3d.core.outputs.x_plan_outputs__mutmut_2": 0,  # survived
        "blender_img3d.core.outputs.xǁOutputPlanǁpaths__mutmut_1": 1,  # a method's mutant
        "blender_img3d.core.outputs.x_plan_outputs__mutmut_3": 36,  # timeout
    }
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    summary = _tool().report(tmp_path, show=False)
    assert summary["score_percent"] == 50.0
    assert summary["modules"] == {
        "blender_img3d.core.outputs": {"killed": 2, "survived": 1, "timeout": 1}
    }
    assert json.loads((tmp_path / "mutants" / "score.json").read_text()) == summary
    assert capsys.readouterr().out.splitlines()[-1].split()[:4] == ["total", "4", "mutants", "50.0"]


def test_core_mode_mutates_all_of_core_against_the_core_and_reliability_tests(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    _tool().select_all_of_core(tmp_path)
    before = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    after = tomllib.loads((tmp_path / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert after["only_mutate"] == ["blender_img3d/core/*"]
    assert after["pytest_add_cli_args_test_selection"] == ["tests/core", "tests/reliability"]
    assert {k: v for k, v in after.items() if k not in _tool().CORE_SELECTION} == {
        k: v for k, v in before.items() if k not in _tool().CORE_SELECTION
    }
