"""The promises of the README: its commands are the ones CI runs, and they work."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_gives_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("python -m sklip")
    assert "pytest" in tests
    for command in commands:
        assert command.startswith("pip install torch==2.13.0 && ")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_demo_runs():
    result = subprocess.run(
        [sys.executable, "-m", "sklip"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "0 flipped (proof)" in result.stdout


def test_torch_requirement_admits_the_local_cpu_build():
    text = (ROOT / "pyproject.toml").read_text()
    (spec,) = re.findall(r'"torch([^"]*)"', text)
    lower = re.search(r">=\s*([\d.]+)", spec).group(1)
    upper = re.search(r"<\s*([\d.]+)", spec).group(1)
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    assert as_tuple(lower) <= (2, 13, 0) < as_tuple(upper)
