"""Saved figures: four files per figure (.npz arrays, .json settings, .pdf and .png), published as
a set and sealed together, and read back only if they still belong together.
"""

import atexit
import contextlib
import hashlib
import json
import os
import platform
import re
import socket
import sys
import tempfile
import time
import zipfile
import zlib

import numpy as np

from gfs.runs.processes import TEMPORARIES, signals_held


class UsageError(Exception):
    """Bad input from the user: reported as one line, without a traceback."""


def run_metadata(args, started):
    """Settings common to every saved figure: versions, device, run time, flags.
    args: anything with .quick, .device, .dtype, .jobs (the parsed flags)."""
    import matplotlib
    import torch
    gpu = f", {torch.cuda.get_device_name()}" if torch.device(args.device).type == "cuda" else ""
    return {"quick": bool(args.quick), "device": str(args.device), "dtype": str(args.dtype).replace("torch.", ""),
            "jobs": args.jobs, "run_seconds": round(time.time() - started, 2),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": np.__version__, "matplotlib": matplotlib.__version__},
            "machine": f"{platform.machine()}, {os.cpu_count()} cores{gpu}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())  # in temporary names (shared folders: whose pid)


def _temporary_file(folder, extension):
    """A new empty file .tmp-<pid>@<host>-<random><extension> in `folder`, registered so that a
    signal removes it; the pid lets a later save remove it if this process dies by SIGKILL."""
    handle, path = tempfile.mkstemp(dir=folder, prefix=f".tmp-{os.getpid()}@{_HOST}-", suffix=extension)
    TEMPORARIES.add(path)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    return path


def _remove_stale_temporaries(folder):
    """Remove the temporary files that processes of this host, now gone, left in `folder` (SIGKILL
    while saving). Where a pid cannot be tested without harm (Windows), nothing is removed."""
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.tmp-([0-9]+)@{re.escape(_HOST)}-")
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _to_json(value):
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (np.ndarray, np.integer, np.floating)):
        return value.tolist()  # plain Python numbers and lists
    return value


SET_KEYS = ("script", "figure_name", "npz_sha256", "settings_sha256")  # what save_figure adds to the .json


def settings_digest(settings):
    """SHA-256 of the .json's settings (all but this digest; they include the .npz's SHA-256): the
    seal that binds the quick flag, the figure, the seeds and every other setting to the arrays."""
    canonical = json.loads(json.dumps(_to_json(settings), default=str))
    canonical.pop("settings_sha256", None)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def save_figure(fig, out_dir, name, data, settings, script=None):
    """Save `fig` as DIR/name.pdf and .png, `data` (dict of arrays) as .npz, `settings` as .json, as a set: each written
    in full under a temporary name, then renamed, the .json last and with Ctrl-C/SIGTERM held back (docs/outputs.md).
    The .json also records `name` (e.g. 'Q-dynamics/x'), the `script` (if given), the .npz's SHA-256 and
    settings_digest, which load_figure_data checks. Returns [.npz, .json, .pdf, .png]."""
    import matplotlib.pyplot as plt
    stem = os.path.join(out_dir, name)
    folder = os.path.dirname(stem) or "."
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temporaries(folder)
    temporary = {}
    try:
        for extension in (".npz", ".pdf", ".png", ".json"):
            temporary[extension] = _temporary_file(folder, extension)
        with open(temporary[".npz"], "wb") as f:
            np.savez_compressed(f, **{key: np.asarray(value) for key, value in data.items()})
        # Fixed metadata keep the PDF and PNG byte-identical across runs.
        fig.savefig(temporary[".pdf"], format="pdf", bbox_inches="tight",
                    metadata={"CreationDate": None, "Creator": None})
        fig.savefig(temporary[".png"], format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
        saved_by = {"script": script} if script else {}
        settings = {**saved_by, "figure_name": name, **{k: v for k, v in settings.items() if k not in SET_KEYS},
                    "npz_sha256": _sha256(temporary[".npz"])}
        settings["settings_sha256"] = settings_digest(settings)
        with open(temporary[".json"], "w") as f:
            # default=str: torch dtypes and devices (and anything else without a JSON form) as text
            f.write(json.dumps(_to_json(settings), indent=2, default=str) + "\n")
        with signals_held():
            for extension in (".npz", ".pdf", ".png", ".json"):
                os.replace(temporary[extension], stem + extension)
    finally:
        for path in temporary.values():
            with contextlib.suppress(OSError):
                os.remove(path)  # only where the save did not finish
            TEMPORARIES.discard(path)
    plt.close(fig)
    return [stem + extension for extension in (".npz", ".json", ".pdf", ".png")]


def write_atomic(path, content):
    """Write content (str or bytes) to path complete or not at all, with the usual permissions (0666 less the umask)."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{os.getpid()}@{_HOST}-{os.path.basename(path)}")
    try:
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), mode) as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def png_preview(fig, max_width_px=1200, max_dpi=100):
    """The figure as PNG bytes at screen resolution (at most `max_width_px` wide): what a notebook
    shows inline, so that a committed notebook stays small; the saved .png (150 dpi) is for print."""
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=min(max_dpi, max_width_px / fig.get_size_inches()[0]), bbox_inches="tight",
                metadata={"Software": None})
    return buffer.getvalue()


class SavedArrays(dict):
    """The arrays of a saved .npz (name -> array). Asking for one it lacks raises UsageError naming
    the file and the array (not KeyError): how --plot-only learns which arrays the plot needs."""

    def __init__(self, arrays, path):
        super().__init__(arrays)
        self.path = path

    def __missing__(self, key):
        raise UsageError(f"{self.path} has no array {key!r}, which the plot needs (saved by another "
                         f"version of the script?); re-run without --plot-only")


def load_figure_data(out_dir, name, script=None, again="re-run without --plot-only"):
    """(data: SavedArrays, settings) that save_figure saved as DIR/name.npz/.json, trusting neither: the .json must be
    readable, unedited (settings_digest) and name this figure (and `script`, if given); the .npz must be the one it
    describes (same SHA-256), readable, and hold the seeds it names. UsageError (one line, ending with `again`)."""
    stem = os.path.join(out_dir, name)
    if not (os.path.isfile(stem + ".npz") and os.path.isfile(stem + ".json")):
        raise UsageError(f"no saved data at {stem}.npz/.json; run without --plot-only first")
    try:
        with open(stem + ".json", encoding="utf-8") as f:
            settings = json.load(f)
    except (OSError, ValueError) as error:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"{stem}.json cannot be read (damaged or cut short: {error}); {again}") from None
    required = SET_KEYS if script else SET_KEYS[1:]
    if not isinstance(settings, dict) or any(key not in settings for key in required):
        raise UsageError(f"{stem}.json does not say which script and figure saved it (an older version of "
                         f"this package wrote it, or another program); {again}")
    if settings.get("settings_sha256") != settings_digest(settings):
        raise UsageError(f"{stem}.json was edited after it was saved, or saved by an older version (its settings, "
                         f"such as quick, figure or seeds, are not the ones sealed with the .npz); {again}")
    # a run's output folder may sit inside another (make's float64/): the name ends with the saved one
    if not (name == settings["figure_name"] or name.endswith("/" + settings["figure_name"])) or (
            script and settings["script"] != script):
        raise UsageError(f"{stem}.json holds {settings.get('script', 'another script')}'s figure "
                         f"{settings['figure_name']!r}, not {script or 'this script'}'s {name!r}; {again}")
    if settings["npz_sha256"] != _sha256(stem + ".npz"):
        raise UsageError(f"{stem}.npz is not the file its .json describes (damaged, cut short, or from another "
                         f"run); {again}")
    try:
        with np.load(stem + ".npz", allow_pickle=False) as saved:
            data = SavedArrays({key: saved[key] for key in saved.files}, stem + ".npz")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UsageError(f"{stem}.npz cannot be read (damaged: {error}); {again}") from None
    seeds = np.ravel(data["seeds"]).tolist() if "seeds" in data else None
    if isinstance(settings.get("seeds"), list) and seeds is not None and seeds != np.ravel(settings["seeds"]).tolist():
        raise UsageError(f"{stem}.npz holds seeds {seeds}, its .json names {settings['seeds']}; {again}")
    return data, settings


def hold_output_dir(folder, holder):
    """Hold `folder` for this process as `holder` (a script's or a notebook's name) until it ends; UsageError if a live
    process holds it as the same holder: two runs of one script into one folder would overwrite each other's files
    (different scripts may share one).

    The hold, named after the folder's real path and holding the pid, is a file in the system's temporary folder (never
    in the output folder, which may be the committed figures/), removed at exit or by a signal (TEMPORARIES); one whose
    process is gone is taken over. Returns its path (None without a writable temporary folder).
    """
    real = os.path.realpath(folder)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", holder)
    path = os.path.join(tempfile.gettempdir(), f"gfs-running-{hashlib.sha256(real.encode()).hexdigest()[:16]}-{name}")
    for _ in range(2):  # the second try after removing a hold whose process is gone
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _holder_pid(path)
            if pid is not None and pid != os.getpid() and _alive(pid):
                raise UsageError(f"another run of {holder} (process {pid}) is writing into {folder!r}: wait for "
                                 f"it to end, or give another output folder") from None
            with contextlib.suppress(OSError):
                os.remove(path)
            continue
        except OSError:  # no writable temporary folder: run without the hold
            return None
        with os.fdopen(handle, "w") as f:
            f.write(f"{os.getpid()}\n{real}\n")
        TEMPORARIES.add(path)
        atexit.register(_release_hold, path, os.getpid())
        return path
    return None


def _holder_pid(path):
    with contextlib.suppress(OSError, ValueError):
        with open(path) as f:
            return int(f.readline())
    return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        pass
    return True


def _release_hold(path, pid):
    if os.getpid() == pid and _holder_pid(path) == pid:  # not in a forked worker; still this process's
        with contextlib.suppress(OSError):
            os.remove(path)
    TEMPORARIES.discard(path)
