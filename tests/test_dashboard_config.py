"""The dashboard's effective Streamlit settings (what `streamlit run app.py` uses from the
repository root): private by default, XSRF on, CORS off, uploads bounded, and the workspace
kept out of the file watcher."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def effective_config() -> str:
    out = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


def test_effective_settings():
    text = effective_config()

    def value(name: str) -> str:
        match = re.search(rf"(?m)^{name} = (.*)$", text)
        assert match, f"{name} not in the effective config"
        return match.group(1).strip()

    assert value("address") == '"localhost"'
    assert value("enableXsrfProtection") == "true"
    assert value("enableCORS") == "false"
    assert value("maxUploadSize") == "20"
    block = re.search(r"(?ms)^folderWatchBlacklist = \[(.*?)\]", text).group(1)
    assert '"artifacts"' in block
