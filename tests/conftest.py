"""Shared fixtures: a tiny CIFAR-shaped data set in the official cifar-10-batches-py layout."""
import os
import pickle
import signal
import sys

import pytest

from helpers import REPO, write_tiny_cifar

if REPO not in sys.path:
    sys.path.insert(0, REPO)
# A suite started in the background (`nohup ... &`) inherits an ignored SIGINT, which its children would inherit too,
# so the Ctrl-C tests could not interrupt them; a handler (unlike SIG_IGN) is reset to the default in each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """Path of a folder holding a tiny learnable CIFAR-10 (5 x 200 train, 200 test images)."""
    return write_tiny_cifar(tmp_path_factory.mktemp("tiny_cifar"))
