"""Operator commands without the development install: a fresh clone, a user who is not root,
Python and Terraform only. `make capacity` plans (building only the small ops virtualenv,
no apt, no `.venv`); `make plan` refuses to plan without tfvars, and takes the placeholder
example only when it is named."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.terraform, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]
USER = "nobody"


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("runs as root (as CI does) to switch to an unprivileged user")
    # Not under pytest's own temp root: that one is private to root (mode 700).
    root = Path(tempfile.mkdtemp(prefix="ops-"))
    os.chmod(root, 0o755)
    dest = root / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True)
    (root / "home").mkdir()
    user = pwd.getpwnam(USER)
    for path in (dest, root / "home"):
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(path)], check=True)
    yield dest
    shutil.rmtree(root, ignore_errors=True)


def as_user(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(clone.parent / "home"),
        "PATH": f"{Path(shutil.which('terraform') or '/usr/bin/terraform').parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        # The provider is not needed by these commands; keep the lookup off root's dirs.
        "TF_PLUGIN_DIR": "",
    }
    return subprocess.run(
        [
            shutil.which("runuser") or "/usr/sbin/runuser",
            "-u",
            USER,
            "--",
            "make",
            "-C",
            str(clone),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )


def test_make_capacity_needs_neither_root_nor_the_development_install(clone: Path) -> None:
    done = as_user(clone, "capacity", "SUBMISSIONS=350")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "350" in done.stdout
    assert (clone / ".venv-ops" / "bin" / "python").exists()
    assert not (clone / ".venv").exists()  # no development install, so no apt either
    assert "apt-get" not in done.stdout + done.stderr


def test_make_plan_refuses_the_placeholder_unless_named(clone: Path) -> None:
    refused = as_user(clone, "plan")
    assert refused.returncode != 0
    assert "no tfvars" in refused.stdout + refused.stderr
    named = as_user(clone, "plan", "TFVARS=terraform/examples/decision-record.tfvars")
    # Past the tfvars check; a real plan needs the account's state bucket (make bootstrap).
    assert "no tfvars" not in named.stdout + named.stderr
    assert "terraform/backend.hcl missing: make bootstrap" in named.stdout + named.stderr
    assert not (clone / ".venv").exists()
