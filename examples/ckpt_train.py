#!/usr/bin/env python3
"""The demo's checkpointing job lives in the package (skyops_tui/demo_job/ckpt_train.py),
so an installed wheel carries it; this path keeps working for examples/plan.toml and the
docs, which run it from a checkout."""

import os
import runpy

HERE = os.path.dirname(os.path.abspath(__file__))
runpy.run_path(
    os.path.join(HERE, os.pardir, "skyops_tui", "demo_job", "ckpt_train.py"), run_name="__main__"
)
