"""The job the demo grid runs, shipped inside the package so a wheel install can run the
demo: `ckpt_train.py` is a stdlib-only script started as a process, never imported."""
