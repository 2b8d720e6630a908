"""Running the figure scripts: the command line and driver (command_line.py), saved files and their
checks (saved_files.py), signals and worker processes (processes.py). No science here."""
