"""Every config key has a row in the README's configuration table (rows may group keys)."""
import re
from pathlib import Path

from rils.train.config import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_config_key_is_in_the_readme_table():
    text = README.read_text()
    table = text[text.index("## Configuration reference"):]
    table = table[:table.index("\n## ", 1)]
    documented = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z_]+(?:\.[a-z0-9_]+)?)`", line.split("|")[1]))
    missing = [key for key, *_ in config_reference() if key not in documented]
    assert not missing, f"config keys without a README row: {missing}"
