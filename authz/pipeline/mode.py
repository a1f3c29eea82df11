"""The former entry point that applied the policy's mode around the decision.

`decide` applies the mode itself now (see pipeline.steps.mode), so `decide_in_mode` is only
its old name, kept for callers written before - the in-process benchmark imports it. New code
calls pipeline.decide.decide.
"""

from __future__ import annotations

from authz.pipeline.decide import decide as decide_in_mode

__all__ = ["decide_in_mode"]
