"""Signals and worker processes: Ctrl-C and SIGTERM end a run at once, with one line, leaving no
partial file (exit_cleanly_on_signals, signals_held); independent jobs run in worker processes
that end with their parent (parallel_map).
"""
import contextlib
import os
import signal
import subprocess
import sys
import threading

TEMPORARIES = set()          # files this process is writing (save_figure); removed when a signal ends it
_SIGNAL_OWNER = {}            # pid, prog and cleanup of the process that installed the handlers
_EXIT_SIGNALS = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


def exit_cleanly_on_signals(prog, cleanup=None):
    """From now on, Ctrl-C (SIGINT) and SIGTERM end this process at once, without a traceback: its worker processes
    ended, the temporary files of a save in progress removed, one line 'prog: stopped by ...' on stderr, exit status
    128 + signal number (130, 143: what a shell reports, so make stops too). cleanup: also called then; the text it
    returns is added to the line. Main thread only; a signal ignored at start (nohup, background jobs) stays so."""
    if threading.current_thread() is not threading.main_thread():
        return
    _SIGNAL_OWNER.update(pid=os.getpid(), prog=prog, cleanup=cleanup)
    for signum in _EXIT_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum, _frame):
    if os.getpid() != _SIGNAL_OWNER["pid"]:  # a worker forked before its initializer reset the handlers
        os._exit(128 + signum)
    for other in _EXIT_SIGNALS:  # a second Ctrl-C must not interrupt the clean-up
        signal.signal(other, signal.SIG_IGN)
    workers = sys.modules["multiprocessing"].active_children() if "multiprocessing" in sys.modules else []
    _end_processes(workers)
    for path in list(TEMPORARIES):
        with contextlib.suppress(OSError):
            os.remove(path)
    done = ""
    if _SIGNAL_OWNER.get("cleanup"):
        with contextlib.suppress(Exception):
            done = _SIGNAL_OWNER["cleanup"]() or ""
    with contextlib.suppress(Exception):  # lines already printed; it may fail if the signal came mid-print
        sys.stdout.flush()
    newline = "\n" if sys.stderr.isatty() else ""  # after a progress bar
    ended = (f"; {len(workers)} worker processes ended" if workers else "") + (f"; {done}" if done else "")
    message = f"{newline}{_SIGNAL_OWNER['prog']}: stopped by {_EXIT_SIGNALS[signum]}{ended}; no partial file left\n"
    with contextlib.suppress(OSError):
        os.write(2, message.encode())  # unbuffered: the signal may have come in the middle of a print
    os._exit(128 + signum)  # at once: the clean-up is done, no atexit or finally runs


def _end_processes(processes):
    """Terminate multiprocessing children and wait (briefly) until they are gone."""
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)


@contextlib.contextmanager
def signals_held():
    """Run the block with Ctrl-C and SIGTERM held back, then act on one that came: a figure's
    files are renamed all or none. Only in the main thread (the only one that gets them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: arrived.append(signum))
                for signum in _EXIT_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if arrived:
            signal.raise_signal(arrived[0])


# ----------------------------------------------------------------------------------------------
# Worker processes

def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for the next allocation (no-op elsewhere). Ensembles and attacks free
    many tensors of a few MB, which glibc returns to the system, and the next allocation faults the pages in again:
    a third of the CIFAR ensemble grid's time, measured. The process then holds on to its peak memory."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    return all([libc.mallopt(M_MMAP_THRESHOLD, 32 * 2 ** 20), libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30),
                libc.mallopt(M_TOP_PAD, 64 * 2 ** 20)])


def end_with_parent(signum):
    """Have the kernel send this process `signum` when its parent ends, however that ends (SIGKILL too): Linux's
    PR_SET_PDEATHSIG. False elsewhere (nothing done)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    ctypes.CDLL(None).prctl(1, signum)  # PR_SET_PDEATHSIG
    return True


def end_process_group(process, grace=5):
    """SIGTERM to the process group led by `process` (a subprocess.Popen), SIGKILL if it has not ended within `grace`
    seconds; returns its exit status (None if it outlasts the SIGKILL by `grace` seconds too)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return process.wait(timeout=grace)
    return process.poll()


def _start_worker(parent_pid):
    """Initializer of each worker: Ctrl-C is left to the parent (which ends its workers), SIGTERM ends it at once,
    and so does the parent's end, however that ends. One torch thread (workers share the cores); freed memory kept."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not end_with_parent(signal.SIGKILL):
        # not Linux: a thread waits for the parent's end (its pipe closes, or its handle is signalled)
        import multiprocessing
        from multiprocessing.connection import wait
        sentinel = multiprocessing.parent_process().sentinel
        threading.Thread(target=lambda: (wait([sentinel]), os._exit(1)), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent ended before the line above took effect
        os._exit(1)
    import torch
    torch.set_num_threads(1)
    keep_freed_memory()


def parallel_map(function, job_kwargs, jobs, bar=None, start_method=None):
    """[function(**kwargs) for kwargs in job_kwargs], in up to `jobs` worker processes (<= 1: in this one).
    Processes, not threads: each training is a long loop of tiny tensor ops, and threads contend for the GIL.
    `function` must be importable; the first failure stops the other runs at once. bar: advanced by one per finished
    run. start_method None: fork on Linux (instant; safe while this process has run no parallel torch op, so no
    thread pool is copied), else spawn; 'spawn' where torch threads may be running (a notebook kernel)."""
    job_kwargs = list(job_kwargs)
    if jobs <= 1 or len(job_kwargs) <= 1:
        results = []
        for kwargs in job_kwargs:
            results.append(function(**kwargs))
            if bar is not None:
                bar.update(1)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    context = multiprocessing.get_context(start_method or ("fork" if sys.platform.startswith("linux") else "spawn"))
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(job_kwargs)), mp_context=context,
                               initializer=_start_worker, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(function, **kwargs) for kwargs in job_kwargs]
        for future in as_completed(futures):
            future.result()  # the first failure stops everything at once
            if bar is not None:
                bar.update(1)
        results = [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _end_processes(set(multiprocessing.active_children()) - others)
        raise
    pool.shutdown()
    return results
