"""Hardening: a run directory is data, every way a trial can end ends it, and
bad values get one line -- each case injected, then checked."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import harness

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# --- a run directory never runs code -------------------------------------------------------

PAYLOAD = textwrap.dedent("""
    from pathlib import Path
    Path(__file__).with_name("PAYLOAD_RAN").write_text("imported")
    from engine.core import *  # noqa: F401,F403
""")


@pytest.mark.parametrize("recorded_model", [True, False], ids=["model recorded", "old run without the column"])
def test_check_and_load_never_import_a_variant_named_in_the_run(tmp_path: Path, recorded_model: bool) -> None:
    run = harness.run("exp17", variants=["weakref"], params={"iterations": 2}, out=tmp_path, plots=False,
                      progress=False)
    payload = run.path / "payload.py"  # the payload can sit inside the run directory itself
    payload.write_text(PAYLOAD, encoding="utf-8")
    summary = pd.read_csv(run.path / "summary.csv")
    assert summary.loc[0, "model_variant"] == "weakref" and summary.loc[0, "model_source"] == "built-in"
    summary["variant"] = f"file:{payload}"
    if not recorded_model:
        summary = summary.drop(columns=["model_variant", "model_source"])
    summary.to_csv(run.path / "summary.csv", index=False)

    checked = cli("check", str(run.path), cwd=tmp_path)
    checks = harness.load(run.path).checks()
    assert not (run.path / "PAYLOAD_RAN").exists()
    if recorded_model:  # judged by the model recorded at run time
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "PASS" in checked.stdout and len(checks) == 2 and all(c.passed for c in checks)
    else:  # no model known without importing the engine: nothing judged, and it says so
        assert checks == []
        assert checked.returncode == 1 and "no expectation applies" in checked.stdout
