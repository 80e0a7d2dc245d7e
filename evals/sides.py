"""The two sides of a comparison: which product code and which levers each runs.

A side is a source tree (its `containers/` is what runs) and a config (levers). The
candidate is the working tree with `--config`; the baseline (`BASELINE=`) is

- a config file (`evals/configs/x.json`): the working tree's code with those levers;
- a git ref (`main`, `HEAD~3`, a sha): that commit's tree exported (`git archive`) under
  the cache, with its own `evals/configs/default.json` when it has one;
- a directory holding a `containers/` tree (tests use a patched copy).

Each side runs in its own process with `PYTHONPATH=<tree>/containers:<harness>`, so the
harness (this package) is the same on both sides and only the product differs. A side's
results are cached per case, keyed by the content of its `containers/` tree, its config
and the case's recipe: an unchanged baseline is not run again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

from evals.config import Config

REPO = Path(__file__).resolve().parents[1]
# Product files whose change changes what the model is asked, shown or how it answers:
# models, prompts, schemas, media resolution, segmentation, clip cutting, what is sent.
MODEL_PATHS = (
    "*/prompts.py",
    "*/schemas.py",
    "*/kind.py",
    "*/rubric.py",
    "analysis_engine/gemini/*",
    "analysis_engine/planning.py",
    "analysis_engine/settings.py",
    "analysis_engine/model_specs.py",
    "analysis_engine/mapreduce.py",
    "analysis_engine/reduce.py",
    "analysis_engine/clips.py",
    "analysis_engine/media/cut.py",
    "*triage*",
)
MODEL_ENV_PREFIXES = ("GEMINI_", "SEGMENT_", "MAP_", "TRIAGE", "IDLE_", "MAX_RECORDING")


class SideError(ValueError):
    """A BASELINE/CANDIDATE that names nothing usable."""


@dataclass(frozen=True)
class Side:
    role: str  # "candidate" | "baseline"
    label: str  # what it is, for the report
    root: Path  # a tree with containers/
    config: Config

    def files(self) -> dict[str, str]:
        return tree_files(self.root)

    def key(self, what: str = "model") -> str:
        """Identity of what this side runs: its product code and the levers `what` (signals
        or model) reads (detectors never read the model's `env`)."""
        config = self.config.to_dict()
        config.pop("name")
        if what == "signals":
            config.pop("env")
        text = json.dumps({"tree": self.files(), "config": config}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def tree_files(root: Path) -> dict[str, str]:
    """{path under containers/: content hash} of the product code (sources, templates)."""
    return dict(_tree_files(root.resolve()))


@cache
def _tree_files(root: Path) -> tuple[tuple[str, str], ...]:
    base = root / "containers"
    if not base.is_dir():
        raise SideError(f"{root}: no containers/ tree here")
    out = {}
    for path in sorted(base.rglob("*")):
        if (
            path.is_file()
            and path.suffix in (".py", ".j2", ".json")
            and "__pycache__" not in path.parts
        ):
            out[str(path.relative_to(base))] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return tuple(sorted(out.items()))


def model_changes(candidate: Side, baseline: Side) -> list[str]:
    """What differs between the sides that the model would see (empty: nothing)."""
    reasons = []
    cand, base = candidate.files(), baseline.files()
    for path in sorted(set(cand) | set(base)):
        if cand.get(path) != base.get(path) and any(fnmatch(path, p) for p in MODEL_PATHS):
            reasons.append(f"code: containers/{path}")
    env_c, env_b = candidate.config.env, baseline.config.env
    for key in sorted(set(env_c) | set(env_b)):
        if key.startswith(MODEL_ENV_PREFIXES) and env_c.get(key) != env_b.get(key):
            reasons.append(f"lever: {key} {env_b.get(key)!r} → {env_c.get(key)!r}")
    return reasons


def _git(*args: str, cwd: Path = REPO) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SideError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def checkout(ref: str, cache: Path) -> Path:
    """The tree of `ref` (its `containers/` and `evals/configs/`) under `cache`, exported
    with `git archive` (no worktree is registered in the repository), reused while the
    commit is the same."""
    sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    dest = cache / "trees" / sha[:12]
    if (dest / "containers").is_dir():
        return dest
    tmp = dest.with_name(f".{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    paths = ["containers"] + (["evals/configs"] if _has(sha, "evals/configs") else [])
    archive = subprocess.run(["git", "archive", "--format=tar", sha, *paths], cwd=REPO,
                             capture_output=True, check=False)  # fmt: skip
    if archive.returncode != 0:
        raise SideError(f"git archive {ref}: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    try:
        tmp.rename(dest)
    except OSError:  # exported by someone else meanwhile: theirs is the same commit
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _has(sha: str, path: str) -> bool:
    proc = subprocess.run(["git", "cat-file", "-e", f"{sha}:{path}"], cwd=REPO,
                          capture_output=True, check=False)  # fmt: skip
    return proc.returncode == 0


def resolve(
    spec: str | None,
    *,
    role: str,
    default_config: Config,
    cache: Path,
) -> Side:
    """A side from what the user typed (see the module docstring)."""
    if spec is None or spec in ("", "working-tree"):
        return Side(role, "working tree", REPO, default_config)
    path = Path(spec)
    if spec.endswith(".json"):
        if not path.is_file():
            raise SideError(f"{role} {spec}: no such config file")
        config = Config.load(path)
        return Side(role, f"working tree with {path.name}", REPO, config)
    if path.is_dir() and (path / "containers").is_dir():
        return Side(role, f"tree {path}", path.resolve(), default_config)
    root = checkout(spec, cache)
    own = root / "evals" / "configs" / "default.json"
    config = Config.load(own) if own.is_file() else default_config
    return Side(role, f"git {spec} ({_git('rev-parse', '--short', spec)})", root, config)


def environment(side: Side, base: Mapping[str, str]) -> dict[str, str]:
    """The environment a side's process runs with: its product first on the path."""
    paths = [str(side.root / "containers"), str(REPO)]
    rest = base.get("PYTHONPATH")
    return {**base, "PYTHONPATH": ":".join([*paths, *([rest] if rest else [])])}
