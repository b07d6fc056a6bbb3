import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sample_config_is_current(tmp_path):
    out = tmp_path / "farm.conf.sample"
    subprocess.run([sys.executable, "-m", "oslo_config.generator", "--namespace", "farm",
                    "--output-file", str(out)], check=True, timeout=60)
    with open(os.path.join(ROOT, "etc", "farm.conf.sample")) as f:
        checked_in = f.read()
    assert out.read_text() == checked_in, "run `tox -e genconfig` and commit etc/farm.conf.sample"
