"""seed_everything must not break child interpreters (DataLoader spawn workers, subprocesses)."""


def test_seed_everything_leaves_an_environment_child_interpreters_accept():
    import os
    import subprocess
    import sys

    from difflab.utils.seeding import seed_everything

    seed_everything(2**40 + 7)
    assert int(os.environ["PYTHONHASHSEED"]) == 7
    assert subprocess.run([sys.executable, "-c", "pass"], env=dict(os.environ)).returncode == 0
