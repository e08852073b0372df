import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import tempfile  # noqa: E402

# compiled expression kernels (pipeline.compiled) go to a throwaway folder, not ~/.cache
os.environ.setdefault("PIPELINE_CACHE_DIR", tempfile.mkdtemp(prefix="pipeline-test-cache-"))
