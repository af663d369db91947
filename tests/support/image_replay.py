"""The image, built without Docker: the Dockerfile's instructions replayed on this machine.

There is no Docker daemon where the tests run, so the image itself is never built here. What
can go wrong in it all the same is in its instructions: a runtime lock that leaves out a
package the gateway imports, a wheel without a module or its data, a command that needs the
build stage's files, a process that writes where its user may not. `replay` follows the
Dockerfile's instructions under a directory that stands for the image's `/`:

- ``FROM`` begins a stage. The base image is not replayed: its ``python`` is a Python 3.11 of
  this machine (as the image's is a 3.11), put first on the stage's ``PATH``, and its
  variables are its ``PATH`` and ``LANG``.
- ``ENV`` sets variables for the stage's later ``RUN`` and, in the last stage, for the container.
- ``WORKDIR`` and ``COPY`` from the build context, which leaves out what ``.dockerignore``
  names (a source it names is an error, as in Docker).
- ``RUN`` through ``sh -c``, each absolute path moved under the directory, with the base
  image's variables, the stage's, and the host's that tell pip where its registry is. Only
  commands joined by ``&&`` whose programs are ``python`` or under the image's own paths run:
  nothing here may change this machine. A ``RUN`` of ``groupadd`` and ``useradd`` alone is
  read instead (the accounts it makes), not run: it would add them to this machine.
- ``COPY --from=STAGE`` copies from that stage's tree. Each stage gets a tree of its own at the
  same path (the one before is moved aside), so a virtualenv copied over keeps the paths it
  was built with, as in the image, and the last stage holds only what it copied.
- ``USER``, ``EXPOSE``, ``HEALTHCHECK``, ``ENTRYPOINT`` and ``CMD`` are kept for the container.

Any other instruction, or a form of one not listed, stops the replay: the Dockerfile cannot
grow past what the replay follows without a test noticing. One difference is deliberate: pip
keeps its cache (the image's ``PIP_NO_CACHE_DIR`` is dropped: ``--require-hashes`` makes the
bytes the same wherever they come from, and the suite's own install has fetched them).

`Image.as_a_container` then runs a command of the image as the Deployment runs its container:
as its user, without capabilities, on a read-only root file system but for ``/tmp``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
#: Variables of the image that the replay leaves out (see the module docstring).
NOT_REPLAYED = frozenset({"PIP_NO_CACHE_DIR"})
#: The variables the base image (python:3.11-slim) sets that the stages build on.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
#: The host's variables a ``RUN`` keeps: where pip finds the registry, and its cache (``HOME``).
_HOST_VARIABLES = re.compile(r"PIP_\w+|\w+_proxy|\w+_PROXY|HOME|SSL_CERT_\w+|REQUESTS_CA_BUNDLE")
#: The longest a stage's commands may take (pip installing from its cache: ~15 s here).
RUN_TIMEOUT = 300.0


class ReplayError(RuntimeError):
    """The Dockerfile asks for something the replay does not follow, or one of its steps failed."""


@dataclass
class Image:
    """A stage replayed; the last one is the image: its tree, and how a container of it runs."""

    name: str
    root: Path
    env: dict[str, str]
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    #: The accounts the stage made (name: uid, gid), read from its ``groupadd``/``useradd``.
    accounts: dict[str, tuple[int, int]] = field(default_factory=dict)
    user: tuple[int, int] | None = None
    exposed: list[int] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)

    def path(self, image_path: str | PurePosixPath) -> Path:
        """Where `image_path`, a path of the image, is under the replay's directory."""
        return self.root / PurePosixPath(image_path).relative_to("/")

    def as_a_container(self, argv: list[str]) -> list[str]:
        """`argv` run as the Deployment runs a container of the image (needs root).

        As the image's ``USER``, with no capabilities and no new privileges, on a root file
        system that is read-only but for ``/tmp`` (the pod's emptyDir; the tests keep the
        pod's other writable volume, the audit folder, under it too): a mount namespace of
        its own (``unshare``), then ``setpriv``. The Deployment's ``securityContext`` asks for
        each of these.
        """
        if self.user is None:
            raise ReplayError("the image names no USER to run as")
        uid, gid = self.user
        unshare, setpriv, mount = (_util_linux(name) for name in ("unshare", "setpriv", "mount"))
        drop = (
            f"{setpriv} --reuid={uid} --regid={gid} --clear-groups --no-new-privs"
            " --bounding-set=-all --inh-caps=-all"
        )
        confine = f'{mount} --bind /tmp /tmp && {mount} -o remount,bind,ro / && exec {drop} -- "$@"'
        return [
            unshare,
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            confine,
            "sh",
            *argv,
        ]

    def program(self, argv: list[str]) -> list[str]:
        """`argv` with its program found on the image's ``PATH``, as the runtime finds it."""
        name, *rest = argv
        found = shutil.which(name, path=self.env["PATH"])
        if found is None:
            raise ReplayError(f"{name}: not on the image's PATH {self.env['PATH']}")
        return [found, *rest]


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, in order: (keyword, arguments), continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, arguments = stripped.partition(" ")
        found.append((keyword.upper(), " ".join(arguments.split())))
    return found


def env_assignments(arguments: str) -> list[tuple[str, str]]:
    """An ``ENV`` instruction's variables, each ``NAME=value``, as written (unexpanded)."""
    return re.findall(r"(\w+)=(\S+)", arguments)


def _under(root: Path, text: str) -> str:
    """`text` with each absolute path (a ``/`` that begins a word) moved under `root`."""
    return re.sub(r"(?<![\w./$:-])/(?=[\w.])", f"{root}/", text)


def _expand(value: str, env: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` in an ``ENV`` value, from the variables set so far."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda found: env.get(found[1] or found[2], ""), value)


def _ignored(context: Path) -> list[str]:
    """The patterns of the context's ``.dockerignore`` (exceptions with ``!`` are refused)."""
    path = context / ".dockerignore"
    if not path.exists():
        return []
    patterns = [line.strip() for line in path.read_text("utf-8").splitlines()]
    patterns = [pattern for pattern in patterns if pattern and not pattern.startswith("#")]
    if any(pattern.startswith("!") for pattern in patterns):
        raise ReplayError(".dockerignore: exceptions (!) are not followed by the replay")
    return patterns


def _is_ignored(relative: str, patterns: list[str]) -> bool:
    """Whether `relative` (a path of the context) is left out by one of `patterns`."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if fnmatch.fnmatchcase(relative, tail) or fnmatch.fnmatchcase(relative, f"*/{tail}"):
                return True
        elif fnmatch.fnmatchcase(relative, pattern.rstrip("/")):
            return True
    return False


def _copy(stage: Image, stages: dict[str, Image], arguments: str, context: Path) -> None:
    """``COPY``: from the build context, or ``--from`` an earlier stage's tree."""
    words = shlex.split(arguments)
    if words[0].startswith("--from="):
        origin = stages[words[0].removeprefix("--from=")]
        [source, target] = words[1:]
        shutil.copytree(
            origin.root / PurePosixPath(source).relative_to("/"),
            stage.root / PurePosixPath(target).relative_to("/"),
            symlinks=True,
        )
        return
    if words[0].startswith("--"):
        raise ReplayError(f"COPY {arguments}: option not followed")
    *sources, target = words
    destination = stage.root / (stage.workdir / target).relative_to("/")
    into_directory = len(sources) > 1 or target.endswith("/")
    patterns = _ignored(context)
    for source in sources:
        if _is_ignored(source, patterns):
            raise ReplayError(f"COPY {source}: left out of the build context by .dockerignore")
        origin = context / source
        copied = destination / origin.name if into_directory else destination
        copied.parent.mkdir(parents=True, exist_ok=True)
        if not origin.is_dir():
            shutil.copy2(origin, copied)
            continue

        def leave_out(directory: str, names: list[str]) -> set[str]:
            base = Path(directory).relative_to(context).as_posix()
            return {name for name in names if _is_ignored(f"{base}/{name}", patterns)}

        shutil.copytree(origin, copied, ignore=leave_out, symlinks=True)


def _exec_form(arguments: str, keyword: str) -> list[str]:
    try:
        argv = json.loads(arguments)
    except ValueError as exc:
        raise ReplayError(f"{keyword} {arguments}: only the exec (JSON) form is followed") from exc
    if not isinstance(argv, list) or not all(isinstance(item, str) for item in argv):
        raise ReplayError(f"{keyword} {arguments}: not a list of strings")
    return argv


def _interpreter_directory(root: Path, python: str) -> Path:
    """A directory whose ``python`` is `python` (the base image's stand-in)."""
    directory = root.parent / f"{root.name}.python"
    directory.mkdir(exist_ok=True)
    link = directory / "python"
    if not link.exists():
        link.symlink_to(os.path.realpath(python))
    return directory


def interpreter_for(uid: int, gid: int) -> str | None:
    """A Python 3.11 of this machine that `uid` can run and make virtualenvs with, if any.

    The tests' own first; but an interpreter under a home only root may enter (pyenv's under
    ``/root``) cannot run as the image's user, and the system's then stands in.
    """
    candidates = [sys.executable, shutil.which("python3.11") or "", "/usr/bin/python3.11"]
    check = "import ensurepip, sys, venv; assert sys.version_info[:2] == (3, 11)"
    for candidate in dict.fromkeys(os.path.realpath(path) for path in candidates if path):
        try:
            runs = subprocess.run(  # noqa: S603 - an interpreter of this machine
                [candidate, "-c", check],
                user=uid,
                group=gid,
                extra_groups=[],
                cwd="/",
                capture_output=True,
                timeout=30,
                check=False,
            )
        except OSError:  # not to be run by `uid` at all
            continue
        if runs.returncode == 0:
            return candidate
    return None


def _util_linux(name: str) -> str:
    """Where this machine's `name` (of util-linux) is: found on the tests' ``PATH``."""
    found = shutil.which(name)
    if found is None:
        raise ReplayError(f"{name} (util-linux) is not installed")
    return found


def can_run_containers() -> str | None:
    """Why `Image.as_a_container` cannot run here (not root, no mount namespace); None if it can."""
    if os.geteuid() != 0:
        return "not root"
    try:
        unshare, mount = _util_linux("unshare"), _util_linux("mount")
        _util_linux("setpriv")
    except ReplayError as exc:
        return str(exc)
    tried = subprocess.run(  # noqa: S603 - util-linux
        [unshare, "--mount", "--propagation", "private", mount, "-o", "remount,bind,ro", "/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if tried.returncode != 0:
        return f"no mount namespace with a read-only root here: {tried.stderr.strip()}"
    return None


def _accounts(command: str) -> dict[str, tuple[int, int]] | None:
    """The accounts a ``RUN`` of only ``groupadd`` and ``useradd`` makes (name: uid, gid).

    None for any other command. Such a command is read, not run: on this machine it would add
    the accounts to the host.
    """
    parts = [shlex.split(part) for part in command.split("&&")]
    if not any(words[0] in {"groupadd", "useradd"} for words in parts):
        return None
    if not all(words[0] in {"groupadd", "useradd"} for words in parts):
        raise ReplayError(f"RUN {command}: accounts made beside other commands")
    groups: dict[str, int] = {}
    users: dict[str, tuple[int, int]] = {}
    for program, *words in parts:
        options = _options(words)
        name = words[-1]
        if program == "groupadd":
            groups[name] = int(options["--gid"])
        else:
            gid = options["--gid"]
            users[name] = (int(options["--uid"]), groups[gid] if gid in groups else int(gid))
    return users


def _options(words: list[str]) -> dict[str, str]:
    """The ``--name value`` options of an account command (flags without a value: empty)."""
    options: dict[str, str] = {}
    index = 0
    while index < len(words) - 1:
        word = words[index]
        takes_value = word in {"--gid", "--uid", "--shell", "--home-dir", "--groups"}
        options[word] = words[index + 1] if takes_value else ""
        index += 2 if takes_value else 1
    return options


def _run(stage: Image, command: str, python_dir: Path) -> None:
    accounts = _accounts(command)
    if accounts is not None:
        stage.accounts.update(accounts)
        return
    for part in command.split("&&"):
        program = shlex.split(part)[0]
        if re.search(r"[;|&<>`$]", part) or not (program == "python" or program.startswith("/")):
            # Only the base image's python and programs under the image's own paths (the
            # virtualenvs the stages make) run: nothing that could change this machine.
            raise ReplayError(f"RUN {command}: {part.strip()!r} is not followed by the replay")
    host = {name: value for name, value in os.environ.items() if _HOST_VARIABLES.fullmatch(name)}
    env = {**host, **stage.env, "PATH": f"{python_dir}:{stage.env['PATH']}"}
    done = subprocess.run(  # noqa: S603 - the Dockerfile's own command
        ["/bin/sh", "-c", _under(stage.root, command)],
        cwd=stage.path(stage.workdir),  # made by `WORKDIR`, or the stage's root
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise ReplayError(f"RUN {command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")


def _user(arguments: str) -> tuple[int, int]:
    uid, _, gid = arguments.partition(":")
    if not uid.isdigit() or not gid.isdigit():
        raise ReplayError(f"USER {arguments}: only numeric uid:gid is followed")
    return int(uid), int(gid)


class _Replay:
    """The stages replayed so far, under one path (each stage before the current moved aside)."""

    def __init__(self, root: Path, python: str, context: Path) -> None:
        self.root = root
        self.context = context
        self.python_dir = _interpreter_directory(root, python)
        self.stages: dict[str, Image] = {}
        self.stage: Image | None = None

    def follow(self, keyword: str, arguments: str) -> None:
        if keyword == "FROM":
            self.begin(arguments)
            return
        if self.stage is None:
            raise ReplayError(f"{keyword} before FROM")
        handler = _HANDLERS.get(keyword)
        if handler is None:
            raise ReplayError(f"{keyword}: an instruction the replay does not follow")
        handler(self, self.stage, arguments)

    def begin(self, arguments: str) -> None:
        found = re.fullmatch(r"(\S+) AS (\w+)", arguments, re.IGNORECASE)
        if found is None:
            raise ReplayError(f"FROM {arguments}: each stage must be named (AS name)")
        if self.stage is not None:  # the stage before moves aside; its tree keeps its files
            aside = self.root.parent / f"{self.root.name}.{self.stage.name}"
            self.root.rename(aside)
            self.stage.root = aside
        self.root.mkdir(parents=True)
        self.stage = self.stages[found[2]] = Image(found[2], self.root, dict(BASE_IMAGE_ENV))

    def env(self, stage: Image, arguments: str) -> None:
        for name, value in env_assignments(arguments):
            if name not in NOT_REPLAYED:
                stage.env[name] = _expand(_under(stage.root, value), stage.env)

    def workdir(self, stage: Image, arguments: str) -> None:
        stage.workdir = stage.workdir / arguments
        stage.path(stage.workdir).mkdir(parents=True, exist_ok=True)

    def copy(self, stage: Image, arguments: str) -> None:
        _copy(stage, self.stages, arguments, self.context)

    def run(self, stage: Image, arguments: str) -> None:
        _run(stage, arguments, self.python_dir)

    def user(self, stage: Image, arguments: str) -> None:
        stage.user = _user(arguments)

    def expose(self, stage: Image, arguments: str) -> None:
        stage.exposed = [int(port) for port in arguments.split()]

    def healthcheck(self, stage: Image, arguments: str) -> None:
        _, _, command = arguments.partition(" CMD ")
        stage.healthcheck = _exec_form(command, "HEALTHCHECK CMD")

    def entrypoint(self, stage: Image, arguments: str) -> None:
        stage.entrypoint = _exec_form(arguments, "ENTRYPOINT")

    def cmd(self, stage: Image, arguments: str) -> None:
        stage.cmd = _exec_form(arguments, "CMD")


_HANDLERS: dict[str, Callable[[_Replay, Image, str], None]] = {
    "ENV": _Replay.env,
    "WORKDIR": _Replay.workdir,
    "COPY": _Replay.copy,
    "RUN": _Replay.run,
    "USER": _Replay.user,
    "EXPOSE": _Replay.expose,
    "HEALTHCHECK": _Replay.healthcheck,
    "ENTRYPOINT": _Replay.entrypoint,
    "CMD": _Replay.cmd,
}


def replay(
    root: Path, python: str = sys.executable, context: Path = ROOT, dockerfile: Path = DOCKERFILE
) -> Image:
    """Build the image's last stage under `root` (which must not exist yet); see the module.

    `python` stands in for the base image's interpreter.
    """
    replayed = _Replay(root, python, context)
    for keyword, arguments in instructions(dockerfile.read_text("utf-8")):
        replayed.follow(keyword, arguments)
    if replayed.stage is None:
        raise ReplayError("no FROM")
    return replayed.stage
