"""``python -m latbench``: the CLI without its console script (e.g. from a source tree on PYTHONPATH)."""

from latbench.cli import main

if __name__ == "__main__":
    main()
