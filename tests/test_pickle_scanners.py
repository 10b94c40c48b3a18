"""A second opinion on the pickle loader from the scanners picklescan and fickling (skipped when
they are not installed): every pickle they flag as dangerous, `safe_load_pickle` refuses.

Neither scanner looks at size: picklescan passes every denial-of-service file of
`pickle_bombs`, and fickling does not finish on the memo tuple DAG, so it is run only on the
code-running pickles here (docs/robustness.md has the comparison).
"""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import pytest

from pickle_bombs import BOMBS
from ravar.data.importers.safe_pickle import safe_load_pickle
from ravar.errors import PickleLimitError, UnsafePickleError

picklescan = pytest.importorskip("picklescan.scanner")
fickling = pytest.importorskip("fickling")


class _Evil:
    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _code_running(marker: Path) -> dict[str, bytes]:
    return {
        "os.system": pickle.dumps({"k": _Evil(os.system, (f"touch {marker}",))}, protocol=2),
        "eval": pickle.dumps({"k": _Evil(eval, (f"open({str(marker)!r}, 'w')",))}, protocol=4),
        "Popen": pickle.dumps({"k": _Evil(subprocess.Popen, (["touch", str(marker)],))}),
        "protocol 0 by hand": f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(),
    }


def _flagged_by_picklescan(path: Path) -> bool:
    result = picklescan.scan_file_path(str(path))
    return result.infected_files > 0 or result.scan_err


@pytest.mark.parametrize("case", ["os.system", "eval", "Popen", "protocol 0 by hand"])
def test_code_running_pickles_flagged_by_both_scanners_are_refused(
    tmp_path: Path, case: str
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "train_label.pkl"
    path.write_bytes(_code_running(marker)[case])
    assert _flagged_by_picklescan(path)
    assert fickling.is_likely_safe(str(path)) is False
    with pytest.raises(UnsafePickleError, match="refuses to load"):
        safe_load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_picklescan_passes_are_refused(tmp_path: Path, name: str) -> None:
    # picklescan judges globals only; these name none but plain data constructors, so it passes
    # them (the comparison in docs/robustness.md: update it if a newer picklescan flags them)
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(BOMBS[name][0]())
    assert not _flagged_by_picklescan(path)
    with pytest.raises(PickleLimitError, match=f"limit {BOMBS[name][1]}="):
        safe_load_pickle(path)
