"""The wheel the image installs: the two runnables, nothing the source tree keeps for itself."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
#: How the image's build stage builds the wheel (Dockerfile), offline.
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]

pytestmark = pytest.mark.timeout(60)


def test_wheel_holds_only_the_gateway_and_the_fake_signer(tmp_path: Path) -> None:
    """The wheel installs `signing_gateway` and `fake_signer`, not `bench`.

    `bench` needs the dev-only dependencies (psutil, matplotlib, py-spy) and is run from the
    source tree (`make bench`, `make soak`); installed, it was a top-level package named
    `bench` in every environment the wheel went to.
    """
    done = subprocess.run(  # noqa: S603 - this interpreter's pip, building this repository
        [*PIP_WHEEL, "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}
    assert tops == {"signing_gateway", "fake_signer", f"{wheel.name.split('-py', 1)[0]}.dist-info"}
