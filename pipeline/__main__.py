"""``python -m pipeline``: the ``pipeline`` command, for environments without the console script."""

from pipeline.cli.main import entrypoint

if __name__ == "__main__":
    entrypoint()
