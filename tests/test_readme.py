"""The README's examples run as written, and its quick start is what CI runs."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README should show a Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "total" in out and "layers/0/kernel" in out  # the sparsity table was printed


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)[0].strip().splitlines()
    commands = [c.split("#")[0].strip() for c in commands]
    assert commands == ["bash scripts/main.sh", "bash scripts/test.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def _readme_calls() -> list[tuple[str, list[str]]]:
    """Every ``sj.name(arg, ...)`` the README writes in code spans, with its argument names."""
    calls = []
    prose = re.sub(r"```.*?```", "", README, flags=re.S)  # inline code spans only
    for span in re.findall(r"`([^`\n]+)`", prose):
        for name, args in re.findall(r"\bsj\.([\w.]+)\(([^()]*)\)", span):
            names = [a.split("=")[0].strip() for a in args.split(",") if a.strip()]
            calls.append((name, [n for n in names if n.isidentifier()]))  # not literals
    return calls


def test_readme_signatures_match_the_code():
    """Argument names the README shows exist, in the order the code takes them."""
    import inspect

    import sparsejax as sj

    calls = _readme_calls()
    assert len(calls) >= 10
    for dotted, names in calls:
        obj = sj
        for part in dotted.split("."):
            obj = getattr(obj, part)
        params = list(inspect.signature(obj).parameters)
        for n in names:
            assert n in params, f"README: sj.{dotted}({', '.join(names)}): no parameter {n!r} in {params}"
        positions = [params.index(n) for n in names]
        assert positions == sorted(positions), (
            f"README: sj.{dotted}({', '.join(names)}) lists them in another order than the code: {params}"
        )
