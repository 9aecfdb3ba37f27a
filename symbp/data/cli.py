"""The ``symbp data`` command: which datasets symbp finds, where, and the folders it remembers.

Takes: ``symbp data [list] [--data-dir DIR]``, ``symbp data add DIR``, ``symbp data forget [DIR | NAME]``
(``add_command(subparsers)`` adds it to the ``symbp`` parser; ``run(args)`` runs it).  Gives: on stdout, per
dataset, the folder a command would read it from and why (``--data-dir``, ``$SYMBP_DATA_DIR``, remembered, cache),
or what is missing and how to get it; ``add`` remembers the folder of each dataset found in DIR and says which;
``forget`` removes remembered folders.  Errors (``add`` of a folder holding no dataset, ``forget`` of a folder not
remembered, a file that cannot be written) are raised as ``ValueError``/``OSError`` for ``symbp``'s one-line report.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from symbp.data import locations
from symbp.data.datasets import ENV_DATA_DIR, user_folders
from symbp.data.download import ENV_CACHE_DIR, cache_root, dataset_cache_dir
from symbp.data.registry import DATASETS, DatasetSpec

DESCRIPTION = """\
List the datasets symbp knows (MNIST, Fashion-MNIST), where each is found and how, and what is missing;
remember a folder that holds them, or forget it.

Every command looks for a dataset in this order: --data-dir DIR, then $SYMBP_DATA_DIR/<name>, then the
remembered folder, then the cache folder, then it downloads into the cache.  When a command finds a dataset
by --data-dir or $SYMBP_DATA_DIR, it remembers that folder (and says so on stderr), so later commands find it
without them."""

EPILOG = """\
actions:
  list          (the default) each dataset: the folder used and how it was found, or what is missing
  add DIR       remember DIR for each dataset it holds (DIR/<name>/ or the four .gz files in DIR itself)
  forget [DIR]  forget the folders remembered in DIR (or a dataset's, by name); all of them without DIR
                (the files themselves are never touched)

examples:
  symbp data
  symbp data add ../shared/data
  symbp data forget ../shared/data
  symbp data forget

The remembered folders are kept in <cache>/datasets/locations.json (the cache folder moves with
$SYMBP_CACHE_DIR); a folder is used only while it holds the original files (sizes and SHA-256 checked).
SYMBP_REMEMBER_DATA=0 stops commands from remembering on their own; `symbp data add` still does."""

HOW = {"data_dir argument": "--data-dir"}


def add_command(subparsers) -> None:
    """Add ``data`` (with ``list``, ``add``, ``forget``) to the ``symbp`` sub-parsers."""
    d = subparsers.add_parser("data", help="list the datasets and where they are found; remember or forget a folder",
                              usage="symbp data [list [--data-dir DIR] | add DIR | forget [DIR | NAME]]",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    d.set_defaults(handler=run, action="list", data_dir=None)
    acts = d.add_subparsers(dest="action", metavar="ACTION", prog="symbp data",
                            help=argparse.SUPPRESS)  # the actions are listed in EPILOG
    ls = acts.add_parser("list", help="each dataset: where it is found and how, or what is missing",
                         description="Each dataset: the folder a command would read it from and how it was found "
                                     "(--data-dir, $SYMBP_DATA_DIR, remembered, cache), or what is missing and how "
                                     "to get it.")
    ls.add_argument("--data-dir", default=None, metavar="DIR",
                    help="show what a command given --data-dir DIR would use")
    a = acts.add_parser("add", help="remember a folder holding datasets",
                        description="Remember DIR as the folder of each dataset it holds (in DIR/<name>/ or "
                                    "directly in DIR); the files' sizes and SHA-256 are checked first.")
    a.add_argument("dir", metavar="DIR", help="a folder holding mnist/ and/or fashion-mnist/, or one's four .gz files")
    f = acts.add_parser("forget", help="forget remembered folders",
                        description="Forget the remembered folders equal to DIR or inside it (DIR/<name>), or the "
                                    "folder of the dataset NAME; without an argument, forget them all.  The files "
                                    "themselves are never touched.")
    f.add_argument("dir", nargs="?", default=None, metavar="DIR | NAME",
                   help="a remembered folder, a folder holding remembered ones, or a dataset name")


def _line(spec: DatasetSpec) -> str:
    return f"{spec.title} ({spec.name})"


def _status(spec: DatasetSpec, data_dir, remembered: dict[str, Path]) -> tuple[Path | None, str, list[str]]:
    """Where a command would read ``spec`` from (None if nowhere without a download), how, and the places
    passed over with why -- the order of ``locate_dataset``, without raising or downloading."""
    looked = []
    for folder, origin in user_folders(spec, data_dir):
        why = locations.folder_problem(folder, spec)
        if why is None:
            return folder, HOW.get(origin, origin.split("/")[0]), looked
        looked.append(f"{folder} ({HOW.get(origin, origin)}): {why}")
        if why.endswith("file)"):  # all four there, one of them wrong: a command stops with an error here
            return None, "error", looked
    if not os.environ.get(ENV_DATA_DIR):
        looked.append(f"${ENV_DATA_DIR}: not set")
    folder = remembered.get(spec.name)
    if folder is not None:
        why = locations.folder_problem(folder, spec)
        if why is None:
            return folder, "remembered", looked
        looked.append(f"{folder} (remembered): {why}")
    else:
        looked.append("remembered folder: none")
    cache = dataset_cache_dir(spec)
    why = locations.folder_problem(cache, spec)
    if why is None:
        return cache, "cache", looked
    looked.append(f"{cache} (cache folder): {why}")
    return None, "", looked


def cmd_list(data_dir=None) -> int:
    remembered = locations.remembered()
    for spec in DATASETS.values():
        folder, how, looked = _status(spec, data_dir, remembered)
        if folder is not None:
            print(f"{_line(spec)}: {folder}  [{how}]")
            stale = [entry for entry in looked if "(remembered)" in entry]
            for entry in stale:  # a remembered folder that is gone: say so, it can be forgotten
                print(f"  passed over: {entry} (`symbp data forget {spec.name}` forgets it)")
            continue
        if how == "error":
            print(f"{_line(spec)}: error: {looked[-1]}; a command given this folder stops here")
            continue
        size = sum(f.size for f in spec.files) / 1e6
        print(f"{_line(spec)}: missing")
        for entry in looked:
            print(f"  {entry}")
        print(f"  to get it: `symbp data add DIR`, DIR holding {spec.name}/ or its four .gz files; or let a "
              f"command download it into the cache (about {size:.0f} MB, e.g. `symbp train --dataset {spec.name}`)")
    print(f"\nremembered folders: {locations.locations_file()}"
          + ("" if remembered else " (none)"))
    print(f"cache folder: {cache_root() / 'datasets'} (set {ENV_CACHE_DIR} to move it)")
    return 0


def cmd_add(directory: str) -> int:
    base = Path(os.path.abspath(Path(directory).expanduser()))
    if not base.is_dir():
        raise ValueError(f"{base} {'is not a folder' if base.exists() else 'does not exist'}")
    found, notes = {}, {}
    for spec in DATASETS.values():
        found[spec.name], notes[spec.name] = locations.find_in(base, spec)
    if not any(found.values()):
        details = "; ".join(f"{DATASETS[name].title}: {', '.join(n)}" for name, n in notes.items())
        raise ValueError(f"{base} holds no dataset, nothing remembered ({details})")
    for name, folder in found.items():
        spec = DATASETS[name]
        if folder is None:
            last = notes[name][-1]  # "folder: why" for base/<name>, the last place looked
            print(f"{_line(spec)}: not in {base} ({base / name}: {last[len(str(base / name)) + 2:]})")
            continue
        changed = locations.remember(spec, folder)
        print(f"{_line(spec)}: {folder}  [{'remembered' if changed else 'already remembered'}]")
    print(f"remembered in {locations.locations_file()}; later commands find the data there "
          f"(`symbp data forget {base}` undoes this)")
    return 0


def cmd_forget(target: str | None) -> int:
    before = locations.remembered() if target is not None else None
    gone = locations.forget(target)
    for name, folder in gone:
        print(f"forgot {folder} ({DATASETS[name].title}); the files are left where they are")
    if gone:
        return 0
    if target is None:
        print("nothing was remembered")
        return 0
    known = ", ".join(str(f) for f in (before or {}).values()) or "none"
    raise ValueError(f"{target} is not remembered, nor a dataset whose folder is (remembered: {known})")


def run(args) -> int:
    """Run ``symbp data``'s action (``args.action``: list, add or forget)."""
    if args.action == "add":
        return cmd_add(args.dir)
    if args.action == "forget":
        return cmd_forget(args.dir)
    return cmd_list(getattr(args, "data_dir", None))
