"""Fake AWS credentials and an S3 API on loopback (moto's server) for the object-storage tests:
loaded by tests/conftest.py as a plugin, so every test module may ask for ``aws_env`` and ``s3``."""

from __future__ import annotations

import os

import pytest

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def aws_env():
    """Fake credentials in the environment (of this process and of the worker processes): the
    configs never hold credentials."""
    saved = {k: os.environ.get(k) for k in AWS}
    os.environ.update(AWS)
    yield AWS
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def s3(aws_env):
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    if not fs.exists("pipeline-test"):  # moto's buckets are shared by every server in this process
        fs.mkdir("pipeline-test")
    yield {"endpoint_url": endpoint}
    server.stop()
