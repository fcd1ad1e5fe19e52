"""The docs/sdk.md `useConversation` snippet type-checks with tsc against the pinned @elevenlabs/react."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import ROOT

FRONTEND = ROOT / "frontend"
TSC = FRONTEND / "node_modules" / ".bin" / "tsc"


def snippet(language: str) -> str:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), re.S)[0]


def typecheck(source: str, folder: Path) -> subprocess.CompletedProcess[str]:
    (folder / "snippet.tsx").write_text(source)
    modules = str(FRONTEND / "node_modules")
    config = {
        "compilerOptions": {
            "target": "ES2022",
            "lib": ["ES2022", "DOM", "DOM.Iterable"],
            "module": "ESNext",
            "moduleResolution": "bundler",
            "jsx": "react-jsx",
            "strict": True,
            "noEmit": True,
            "skipLibCheck": True,  # as frontend/tsconfig.json: the SDK's own dependencies are not ours to check
            "types": [],
            # The snippet lives outside frontend/, so point bare imports at its node_modules.
            "paths": {"*": [f"{modules}/@types/*", f"{modules}/*"]},
        },
        "files": ["snippet.tsx"],
    }
    (folder / "tsconfig.json").write_text(json.dumps(config))
    return subprocess.run([str(TSC), "-p", str(folder)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def tsc_available() -> None:
    if not TSC.exists() or shutil.which("node") is None:
        # `make test` installs them first (scripts/frontend-check.sh); on CI their absence is a failure.
        if os.environ.get("CI"):
            pytest.fail("frontend/node_modules is missing: npm ci in frontend/")
        pytest.skip("the frontend's node_modules are not installed (npm ci in frontend/)")


def test_it_compiles_the_react_snippet_against_the_pinned_package(tsc_available, tmp_path) -> None:
    done = typecheck(snippet("tsx"), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_it_would_notice_a_snippet_that_misuses_the_hook(tsc_available, tmp_path) -> None:
    broken = snippet("tsx").replace("conversation.sendUserMessage(", "conversation.sendUserMesage(")
    done = typecheck(broken, tmp_path)
    assert done.returncode != 0 and "sendUserMesage" in done.stdout
