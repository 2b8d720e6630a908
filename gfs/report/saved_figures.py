"""The saved figures as the report reads them: found by the name their own .json gives (saved_index), each loaded
once (Loader), checked on reading (Figure). Reads .npz and .json files only (no torch, script or notebook); a file
that cannot be read, is incomplete or lacks what a claim needs becomes a DataError naming the file and the fault.
"""
import glob
import json
import os
import re

from gfs.cifar.thresholds import SYMMETRY_TOLERANCE
from gfs.report.verdict_rules import DataError
from gfs.runs.saved_files import UsageError, load_figure_data


def one_line(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


class Figure:
    """One saved figure: .data (the .npz arrays) and .settings (its .json)."""

    def __init__(self, out_dir, name):
        self.name = name
        try:  # the checks of --plot-only: the .json unedited, naming this figure, sealed with this .npz
            data, self.settings = load_figure_data(out_dir, name, again="re-run what made it")
        except UsageError as error:
            raise DataError(str(error).replace(os.path.join(out_dir, ""), "", 1)) from None
        self.data = dict(data)
        self.quick = bool(self.settings.get("quick", False))

    def __getitem__(self, key):
        if key not in self.data:
            raise DataError(f"{self.name}.npz lacks key {key!r}")
        return self.data[key]

    def symmetry_tolerance(self):
        """The CIFAR files' mark above which a moved network is no symmetry (saved with Fig. 10's data)."""
        return float(self.data.get("symmetry_tolerance", SYMMETRY_TOLERANCE))

    def setting(self, key):
        if key not in self.settings:
            raise DataError(f"{self.name}.json lacks setting {key!r}")
        return self.settings[key]


def saved_index(out_dir):
    """Every saved figure under out_dir, by the name its .json gives (figure_name, under the run's sub-folder such as
    float64/): ({name: (stem, has .npz, has .json)}, {stem: its .json, where it reads as a dict}), stems relative to
    out_dir, '/'-separated, in path order. A figure without a readable .json is indexed by its path (loading it then
    says what is wrong)."""
    stems, settings = {}, {}
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), "**", "*.*"), recursive=True)):  # no hidden .tmp-*
        stem, ext = os.path.splitext(os.path.relpath(path, out_dir).replace(os.sep, "/"))
        if ext in (".npz", ".json"):
            stems.setdefault(stem, set()).add(ext)
        if ext == ".json":
            try:
                with open(path, encoding="utf-8") as f:
                    settings[stem] = json.load(f)
            except (OSError, ValueError):
                continue  # indexed by its path: loading it says what is wrong
    settings = {stem: saved for stem, saved in settings.items() if isinstance(saved, dict)}
    index = {}
    for stem, exts in sorted(stems.items()):
        name, saved = stem, settings.get(stem, {}).get("figure_name")
        if isinstance(saved, str) and saved:  # the run's folder (float64/, as deep as the path allows) + its name
            parts = stem.split("/")
            name = "/".join(parts[:max(len(parts) - len(saved.split("/")), 0)] + [saved])
            name = stem if name in stems else name  # a figure saved under that name keeps it
        index[name] = (stem, ".npz" in exts, ".json" in exts)
    return index, settings


class Loader:
    """Each saved figure loaded once (saved_index names them). load(files) -> {unit: Figure, DataError or None}."""

    def __init__(self, out_dir):
        self.out_dir, self.cache, self.loaded = out_dir, {}, {}
        self.index, self.settings = saved_index(out_dir)

    def matching(self, pattern):
        """{unit: names} of the saved figures that fit pattern ({}: a unit; '*': one part of a name, no '_' or '/')."""
        regex = "(.+)".join("[^/_]+".join(re.escape(p) for p in part.split("*")) for part in pattern.split("{}"))
        found = {}
        for name in self.index:
            m = re.fullmatch(regex, name)
            if m:
                found.setdefault(m.group(1) if "{}" in pattern else "", []).append(name)
        return found

    def one(self, pattern):
        if pattern not in self.cache:
            try:
                names = self.matching(pattern).get("", [])
                if len(names) > 1:
                    raise DataError(f"{len(names)} saved figures match {pattern}: {', '.join(names)}; keep one")
                stem, npz, js = self.index[names[0]] if names else (pattern, False, False)
                self.cache[pattern] = (Figure(self.out_dir, stem) if npz and js else None if not (npz or js) else
                                       DataError(f"{stem}{'.json' if npz else '.npz'} is missing beside "
                                                 f"{stem}{'.npz' if npz else '.json'} (an incomplete save)"))
            except DataError as error:
                self.cache[pattern] = error
        return self.cache[pattern]

    def load(self, files):
        if files not in self.loaded:  # the paper's units, then (discover) every other activation with a saved file
            found = self.matching(files.pattern) if files.discover else {}
            units = list(files.units) + sorted(set(found) - set(files.units))
            self.loaded[files] = {files.label(u): self.one(files.pattern.format(u)) for u in units}
        return self.loaded[files]

    def get(self, files):
        return {u: f for u, f in self.load(files).items() if isinstance(f, Figure)}
