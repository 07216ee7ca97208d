"""`python3 dev.py up`'s own options: a bad value is refused in one line before anything starts
(it was a traceback in the launcher, or a product that started with a port it could not use)."""

from __future__ import annotations

import pytest

from fanops.runtime import launcher


@pytest.mark.parametrize(("args", "said"), [
    (["--workers", "0"], "--workers: 0 is not above 0"),
    (["--viewers", "-5"], "--viewers: -5 is not above 0"),
    (["--rate", "nan"], "--rate: nan is not a finite number"),
    (["--sim-port", "70000"], "--sim-port: 70000 is not a port (0-65535)"),
    (["--app-port", "http"], "--app-port: 'http' is not a number"),
    (["--orders-port", "-1"], "--orders-port: -1 is not a port (0-65535)"),
    (["--shop", ""], "--shop:"),
])
def test_a_bad_option_of_dev_py_up_is_refused_in_one_line(capsys, args, said):
    with pytest.raises(SystemExit) as e:
        launcher.parse_args(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after argparse's usage lines, the error in one line
    assert last.startswith("python3 dev.py up: error: argument ") and said in last


def test_good_options_of_dev_py_up_are_taken():
    a = launcher.parse_args(["--workers", "2", "--viewers", "500", "--rate", "1500.5", "--sim-port", "9000",
                             "--shop", "eu-store"])
    assert (a.workers, a.viewers, a.rate, a.sim_port, a.shop) == (2, 500, 1500.5, 9000, "eu-store")
