"""The README's training example runs as written (in CI's onnxruntime-training venv); the set-up
commands and examples/quickstart.py are run by .ci/run itself."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)


def _training_missing() -> str | None:
    try:
        import onnxruntime.training  # noqa: F401  (imports torch)
    except ImportError as e:
        return f"onnxruntime.training is not importable here ({e}); it runs in CI's onnxruntime-training venv"
    return None


@pytest.mark.training
@pytest.mark.skipif(_training_missing() is not None, reason=str(_training_missing()))
def test_readme_training_example_runs(tmp_path, capsys):
    (block,) = [b for b in _python_blocks("Training") if "generate_artifacts" in b]
    cwd = os.getcwd()
    os.chdir(tmp_path)  # it writes ./artifacts
    try:
        exec(compile(block, "README.md (Training)", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    loss = float(re.search(r"loss after 100 steps: (\S+)", capsys.readouterr().out).group(1))
    assert loss < 1e-2, f"the README's example did not learn: loss {loss}"
