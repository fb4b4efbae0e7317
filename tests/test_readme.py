import pathlib

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_snippet_runs_verbatim():
    # The "use it from your own Pyro script" block, with 2 epochs instead of 100.
    code = README.read_text().split("```python\n")[1].split("```")[0]
    assert "range(100)" in code
    namespace = {}
    exec(code.replace("range(100)", "range(2)"), namespace)
    assert namespace["samples"]["z"].shape == (10, 359, 8)
    assert namespace["samples"]["x"].shape == (10, 359, 64)
    log_px, se = namespace["result"].summary()["log_px"]
    assert -64 < log_px < 0 and 0 < se < 0.05
