"""Write the bad-inputs page from the table the tests check (``tests/test_bad_inputs.py``).

Each row runs the user's call and records the first line of the error it gets, so the page
shows what the code says today, not what someone pasted.
"""

import importlib.util
import io
import pathlib
import tempfile
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _cases():
    path = ROOT / "tests" / "test_bad_inputs.py"
    spec = importlib.util.spec_from_file_location("bad_input_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def _cell(text):
    return text.replace("|", "\\|").replace("$", "\\$").replace("\n", " ")


def write(out_path):
    """Run every case and write the Markdown page to ``out_path``; returns the row count.

    Raises
    ------
    RuntimeError
        If a case raises nothing or another exception type than the table says.
    """
    rows = []
    for case in _cases():
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                case.run(pathlib.Path(tmp))
            except case.error as e:
                first = str(e).strip().splitlines()[0]
            else:
                raise RuntimeError(f"{case.call}: raised nothing, expected {case.error.__name__}")
        rows.append(f"| `{_cell(case.call)}` | {case.error.__name__} | {_cell(first)} |")
    page = io.StringIO()
    page.write(
        "# Bad inputs\n\n"
        "What a user of Pyro and of this package often writes by mistake, and the first line "
        "of the error it gets: the argument named, the value given, what was expected. The "
        "table was computed while these docs were built, by running each call; every row is "
        "a case of `tests/test_bad_inputs.py`, which checks the same message. Nothing is "
        "trained or written before such an error.\n\n"
        "| what was written | error | the message's first line |\n"
        "| --- | --- | --- |\n"
    )
    page.write("\n".join(rows) + "\n")
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(page.getvalue(), encoding="utf-8")
    tmp.replace(out_path)
    return len(rows)
