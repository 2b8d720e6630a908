"""Faults: out-of-range flags give one line."""
import pytest
import torch

from figure_driver import figure_parser, parse_figure_args


def one_line(stderr, text):
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and text in lines[0] and "Traceback" not in stderr


# ----------------------------------------------------------------------------------------------
# Flags: every device the code supports, counts beyond any machine

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda:0", "cuda:1"])
def test_a_numbered_cuda_device_without_gpu_gives_the_no_gpu_line(tmp_path, capsys, device):
    with pytest.raises(SystemExit) as exit:
        parse_figure_args(figure_parser("A figure script."), ["--device", device, "--out", str(tmp_path)])
    assert exit.value.code == 2 and one_line(capsys.readouterr().err, f"device '{device}' was requested but no CUDA GPU")


@pytest.mark.parametrize("flag", ["--steps", "--jobs", "--samples"])
def test_an_absurd_count_gives_one_line(capsys, flag):
    import Q_distribution  # the script with all three counts
    with pytest.raises(SystemExit) as exit:
        Q_distribution.make_parser().parse_args([flag, "99999999999999999999"])
    assert exit.value.code == 2
    assert f"argument {flag}: must be at most 2^53" in capsys.readouterr().err.strip().splitlines()[-1]
