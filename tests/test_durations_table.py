"""tests/durations_table.py: the slowest phases of a pytest log, as tests/README.md shows them."""

import pytest

from tests.durations_table import main, slowest, table, wall_seconds

LOG = """\
============================= slowest durations =============================
254.46s call     tests/test_execution.py::test_bf16[a b]
1.57s setup    tests/test_adience.py::test_split
0.01s teardown tests/test_flops.py::test_unsized
=========== 586 passed, 2 skipped in 1422.56s (0:23:42) ===========
"""


def test_the_slowest_phases_come_first_with_their_share_of_the_leg():
    assert slowest(LOG, 2) == [
        (254.46, "call", "tests/test_execution.py::test_bf16[a b]"),
        (1.57, "setup", "tests/test_adience.py::test_split"),
    ]
    assert wall_seconds(LOG) == 1422.56
    text = table(LOG, "TensorFlow", "2026-12-05", 40)
    assert text.splitlines()[0] == "TensorFlow, 2026-12-05: 3 slowest of a 1423 s leg"
    assert "| 254.5 | 18% | call | `tests/test_execution.py::test_bf16[a b]` |" in text


def test_a_log_without_durations_is_an_error(tmp_path, capsys):
    log = tmp_path / "plain.log"
    log.write_text("3 passed in 1.00s\n")
    with pytest.raises(SystemExit, match="no --durations lines"):
        main([str(log), "--leg", "TF", "--date", "today"])
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.log"), "--leg", "TF", "--date", "today"])
    assert "no log at" in capsys.readouterr().err
