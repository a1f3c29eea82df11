"""The check stack built from settings, as `authz serve` builds it."""

from __future__ import annotations

from tests.cli.support import GOOD
from tests.support.procs import run_python

# A fresh interpreter: the test process has long imported whatever its other tests needed.
BUILD_WITHOUT_REDIS = f"""
import asyncio, sys
from authz.cli import build_parser, serve_settings
from authz.stack import build_check_stack

async def main():
    settings, _ = serve_settings(build_parser().parse_args(["serve", "--policies", {str(GOOD)!r}]), {{}})
    stack = await build_check_stack(settings, listen=None, report_policies=False)
    try:
        await stack.start()
        print(sorted(name for name in sys.modules if name.split(".")[0] == "redis"))
    finally:
        await stack.close()

asyncio.run(main())
"""


def test_without_a_redis_url_the_redis_client_is_never_loaded() -> None:
    # It is slow to import, and a replica without --redis-url has no use for it.
    done = run_python("-c", BUILD_WITHOUT_REDIS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
